/**
 * The approvals API, for deciding without Slack (the CLI and the built-in default use it):
 *   GET  /api/approvals[?status=pending&limit=50]   newest first
 *   GET  /api/approvals/:id
 *   POST /api/approvals/:id/approve | /reject       {"reviewer": "<Slack user id, email or local name>", "reason"?: "..."}
 * The reviewer is resolved to a person like a Slack click is (see approvals/people.ts); when who they are cannot be
 * established, nothing counts and the answer is 503 {"code": "identity_unknown"}.
 * Bearer token COUNTERSIGN_ADMIN_TOKEN (wrong tokens count towards the same lockout as /mcp). The reviewer
 * named in the body must be allowed by the approval's policy, exactly as a Slack click: the admin token says
 * the caller is the console or the CLI, the reviewer rules say who may decide.
 */
import express from 'express';
import type { Request, Response, Router } from 'express';
import { z } from 'zod';
import type { DeskAnswer } from '../approvals/desk.js';
import { APPROVAL_STATUSES } from '../approvals/record.js';
import type { ApprovalRecord } from '../approvals/record.js';
import { ApprovalStoreUnavailableError } from '../approvals/store.js';
import type { GatewayServices } from '../gateway/services.js';
import { refuseWrongToken } from './auth-failure.js';
import { clientAddress } from './auth-throttle.js';
import type { AuthThrottle } from './auth-throttle.js';
import { SecretToken, bearerToken } from './guards.js';
import { BodyTooLargeError, readBody } from './body.js';

/** What the API shows of an approval (the kept result is not shown; it belongs to the agent). */
export function approvalView(record: ApprovalRecord): Record<string, unknown> {
  // Results belong to the agent (its retry or task), not to whoever reads approvals.
  const { result: _result, taskResult: _taskResult, ...rest } = record;
  return {
    ...rest,
    createdAt: new Date(record.createdAt).toISOString(),
    expiresAt: new Date(record.expiresAt).toISOString(),
    ...(record.decidedAt ? { decidedAt: new Date(record.decidedAt).toISOString() } : {}),
    hasKeptResult: _result !== undefined,
  };
}

const decisionBody = z.strictObject({
  reviewer: z.string().min(1).max(128),
  reason: z.string().max(1000).optional(),
});

const listQuery = z.object({
  status: z.enum(APPROVAL_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(50),
});

function statusFor(answer: Extract<DeskAnswer, { ok: false }>): number {
  switch (answer.code) {
    case 'unknown':
      return 404;
    case 'not_reviewer':
    case 'self_approval':
      return 403;
    case 'membership_unknown':
    case 'identity_unknown':
      // Who the reviewer (or the grant's owner) is could not be established: nothing counted; try again.
      return 503;
    case 'already_decided':
    case 'already_voted':
      return 409;
  }
}

export function approvalsApi(
  services: GatewayServices,
  adminToken: string | undefined,
  throttle: AuthThrottle,
): Router {
  const router = express.Router();
  const admin = adminToken ? new SecretToken(adminToken) : undefined;
  const trusted = new Set(services.config.raw.http.trusted_proxies);

  router.use(async (req, res, next) => {
    if (!admin) {
      res
        .status(503)
        .json({ error: 'the approvals API is off: set COUNTERSIGN_ADMIN_TOKEN (at least 16 characters)' });
      return;
    }
    // The valid admin token is served whatever others sent: lockouts only ever refuse wrong tokens.
    const token = bearerToken(req.headers.authorization);
    if (!admin.matches(token)) {
      const address = clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], trusted);
      const refusal = await refuseWrongToken(services, throttle, address, token);
      if (refusal.status === 429) {
        res.setHeader('Retry-After', String(refusal.retryAfterSeconds));
        res.status(429).json({ error: refusal.message });
        return;
      }
      res.setHeader('WWW-Authenticate', 'Bearer realm="countersign-admin"');
      res
        .status(401)
        .json({ error: 'Unauthorized: Authorization: Bearer <COUNTERSIGN_ADMIN_TOKEN> is required' });
      return;
    }
    next();
  });

  const guarded =
    (work: (req: Request, res: Response) => Promise<void>) =>
    async (req: Request, res: Response): Promise<void> => {
      try {
        await work(req, res);
      } catch (error) {
        if (error instanceof ApprovalStoreUnavailableError) {
          res
            .status(503)
            .json({ error: 'approval store unavailable (Redis cannot be reached); nothing changed' });
          return;
        }
        services.logger.error({ err: (error as Error).message }, 'approvals API error');
        res.status(500).json({ error: 'internal error; nothing changed' });
      }
    };

  router.get(
    '/approvals',
    guarded(async (req, res) => {
      const query = listQuery.safeParse(req.query);
      if (!query.success) {
        res.status(400).json({ error: z.prettifyError(query.error) });
        return;
      }
      const records = await services.approvals.store.list({
        limit: query.data.limit,
        ...(query.data.status ? { status: query.data.status } : {}),
      });
      res.json({ approvals: records.map(approvalView) });
    }),
  );

  router.get(
    '/approvals/:id',
    guarded(async (req, res) => {
      const record = await services.approvals.store.get(String(req.params.id));
      if (!record) {
        res
          .status(404)
          .json({ error: `no approval with id ${JSON.stringify(String(req.params.id).slice(0, 80))}` });
        return;
      }
      res.json(approvalView(record));
    }),
  );

  router.post(
    '/approvals/:id/:verdict',
    guarded(async (req, res) => {
      const verdict = req.params.verdict;
      if (verdict !== 'approve' && verdict !== 'reject') {
        res.status(404).json({ error: 'expected /api/approvals/<id>/approve or /reject' });
        return;
      }
      let body: z.infer<typeof decisionBody>;
      try {
        const text = await readBody(req, 16 * 1024);
        const parsed = decisionBody.safeParse(JSON.parse(text));
        if (!parsed.success) {
          res.status(400).json({
            error: `expected {"reviewer": "...", "reason"?: "..."}: ${z.prettifyError(parsed.error)}`,
          });
          return;
        }
        body = parsed.data;
      } catch (error) {
        res.status(error instanceof BodyTooLargeError ? 413 : 400).json({
          error:
            error instanceof BodyTooLargeError
              ? error.message
              : `the body is not valid JSON: ${(error as Error).message}`,
        });
        return;
      }
      const answer = await services.approvals.desk.decide(
        String(req.params.id),
        verdict,
        { id: body.reviewer, name: body.reviewer },
        body.reason ?? '',
      );
      if (!answer.ok) {
        res.status(statusFor(answer)).json({ error: answer.message, code: answer.code });
        return;
      }
      res.json({
        status: answer.status,
        votes: answer.votes,
        message: answer.message,
        approval: approvalView(answer.record),
      });
    }),
  );
  return router;
}
