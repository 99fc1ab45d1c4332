/**
 * The Bolt app: receives Approve / Reject clicks and the reject-reason modal, over HTTP (POST /slack/events,
 * signing secret verified by Bolt's receiver on the raw body) or Socket Mode (SLACK_APP_TOKEN).
 * Every handler acknowledges first (Slack wants an answer within 3 s) and only then reads Redis or calls Slack.
 */
import { App, ExpressReceiver, LogLevel, SocketModeReceiver } from '@slack/bolt';
import type { RequestHandler, Router } from 'express';
import { z } from 'zod';
import type { ApprovalDesk } from '../approvals/desk.js';
import type { Reviewer } from '../approvals/reviewers.js';
import type { ApprovalStore } from '../approvals/store.js';
import { alreadyDecidedText, reviewerLabel } from '../approvals/desk.js';
import type { SlackConfig } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import {
  APPROVE_ACTION,
  REJECT_ACTION,
  REJECT_MODAL,
  REJECT_REASON_BLOCK,
  REJECT_REASON_INPUT,
  rejectModal,
} from './blocks.js';
import type { SlackApi } from './web.js';

/** Slack's replay window: requests older or newer than this (by their timestamp header) are refused. */
export const SLACK_MAX_SKEW_SECONDS = 300;

/**
 * Rule: the request's `X-Slack-Request-Timestamp` is within five minutes of now, in either direction.
 * Bolt refuses stale timestamps but accepts ones from the future; this check comes first and refuses both.
 * Returns why the request is refused, or undefined.
 */
export function slackTimestampProblem(header: string | undefined, nowMs: number): string | undefined {
  if (header === undefined || !/^\d{1,12}$/.test(header))
    return 'missing or malformed X-Slack-Request-Timestamp';
  const skew = Number(header) - Math.floor(nowMs / 1000);
  if (skew > SLACK_MAX_SKEW_SECONDS) return 'request timestamp is in the future';
  if (skew < -SLACK_MAX_SKEW_SECONDS) return 'request timestamp is too old';
  return undefined;
}

function timestampGuard(now: () => number, logger: Logger): RequestHandler {
  return (req, res, next) => {
    const problem = slackTimestampProblem(req.header('x-slack-request-timestamp'), now());
    if (!problem) return next();
    logger.warn({ problem }, 'slack: request refused');
    res.status(401).json({ error: problem });
  };
}

const originSchema = z.object({
  team: z.object({ id: z.string() }).nullish(),
  api_app_id: z.string().optional(),
});

/**
 * Rule: an interaction counts only when it comes from the configured workspace (`team.id`) and app
 * (`api_app_id`), on top of its signature: a signing secret or app token shared with (or leaked from)
 * another app or workspace must not let that app's users decide. Unconfigured ids match nothing.
 * Returns why the interaction is refused, or undefined.
 */
export function interactionOriginProblem(
  body: unknown,
  expected: { teamId?: string | undefined; appId?: string | undefined },
): string | undefined {
  const parsed = originSchema.safeParse(body);
  const team = parsed.success ? parsed.data.team?.id : undefined;
  const app = parsed.success ? parsed.data.api_app_id : undefined;
  if (!expected.teamId || team !== expected.teamId)
    return `interaction from workspace ${JSON.stringify(team ?? null)}, not the configured one`;
  if (!expected.appId || app !== expected.appId)
    return `interaction for app ${JSON.stringify(app ?? null)}, not the configured one`;
  return undefined;
}

const userSchema = z.object({
  id: z.string().min(1),
  username: z.string().optional(),
  name: z.string().optional(),
});
const blockActionSchema = z.object({
  user: userSchema,
  channel: z.object({ id: z.string() }).optional(),
  trigger_id: z.string().optional(),
  actions: z.array(z.object({ action_id: z.string(), value: z.string().optional() })).min(1),
});
const viewSubmissionSchema = z.object({
  user: userSchema,
  view: z.object({
    private_metadata: z.string(),
    state: z
      .object({
        values: z.record(z.string(), z.record(z.string(), z.object({ value: z.string().nullish() }))),
      })
      .optional(),
  }),
});
const modalMetaSchema = z.object({ id: z.string(), channel: z.string().optional() });

function reviewerOf(user: z.infer<typeof userSchema>): Reviewer {
  return { id: user.id, name: user.username ?? user.name ?? user.id };
}

export interface SlackAppOptions {
  config: SlackConfig;
  api: SlackApi;
  desk: ApprovalDesk;
  store: ApprovalStore;
  logger: Logger;
  now: () => number;
}

export interface SlackReceiver {
  /** HTTP mode: mount before any body parser (signature checks need the raw body). */
  router?: Router;
  guard?: RequestHandler;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createSlackApp(options: SlackAppOptions): SlackReceiver {
  const { config, api, desk, store, logger, now } = options;
  const clientOptions = {
    ...(config.apiUrl ? { slackApiUrl: config.apiUrl } : {}),
    retryConfig: { retries: 0 },
  };
  const boltLogger = {
    debug: (...msg: unknown[]) => logger.debug({ bolt: msg.map(String).join(' ') }, 'slack'),
    info: (...msg: unknown[]) => logger.debug({ bolt: msg.map(String).join(' ') }, 'slack'),
    warn: (...msg: unknown[]) => logger.warn({ bolt: msg.map(String).join(' ') }, 'slack'),
    error: (...msg: unknown[]) => logger.warn({ bolt: msg.map(String).join(' ') }, 'slack'),
    setLevel: () => undefined,
    getLevel: () => LogLevel.INFO,
    setName: () => undefined,
  };
  let receiver: InstanceType<typeof ExpressReceiver> | undefined;
  let app: InstanceType<typeof App>;
  if (config.appToken) {
    // Built here rather than by App({socketMode}) so its apps.connections.open also honours SLACK_API_URL.
    const socket = new SocketModeReceiver({
      appToken: config.appToken,
      logger: boltLogger,
      installerOptions: { clientOptions },
    });
    app = new App({
      token: config.botToken,
      receiver: socket,
      clientOptions,
      logger: boltLogger,
      tokenVerificationEnabled: false,
    });
  } else {
    receiver = new ExpressReceiver({
      signingSecret: config.signingSecret ?? '',
      endpoints: '/slack/events',
      logger: boltLogger,
      bodyLimit: '256kb',
      // Every listener acknowledges first thing, so a request nothing acknowledged within 1 s matched no
      // listener (an event this app does not handle): answer it then rather than after Bolt's default 3 s.
      unhandledRequestTimeoutMillis: 1001,
      // A validly signed payload Bolt cannot process is bad input (400), not a gateway failure (500).
      processEventErrorHandler: async ({ error, response }) => {
        logger.warn({ err: error.message }, 'slack: payload could not be processed');
        if (!response.headersSent) {
          response.writeHead(400, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ error: 'the payload could not be processed' }));
        }
        return true;
      },
    });
    app = new App({
      token: config.botToken,
      receiver,
      clientOptions,
      logger: boltLogger,
      tokenVerificationEnabled: false,
    });
  }

  /**
   * An interaction from another workspace or app changes nothing: it is logged, and audited on the approval
   * it names (if any). Its sender is not answered: their channel and user ids are not this workspace's.
   */
  const foreign = async (
    body: unknown,
    id: string | undefined,
    verdict: 'approve' | 'reject',
    user: z.infer<typeof userSchema> | undefined,
  ): Promise<boolean> => {
    const problem = interactionOriginProblem(body, config);
    if (!problem) return false;
    logger.warn({ problem, approvalId: id?.slice(0, 80) }, 'slack: interaction refused');
    if (id) {
      const label = `slack user ${reviewerLabel(user ? reviewerOf(user) : { id: 'unknown', name: '' })}`;
      await desk
        .refuse(id, verdict, label, `${problem}; nothing changed`)
        .catch((error: Error) => logger.warn({ err: error.message }, 'slack: refusal not audited'));
    }
    return true;
  };

  const tell = async (channel: string | undefined, user: string, text: string): Promise<void> => {
    if (!channel) return;
    await api
      .ephemeral(channel, user, text)
      .catch((error: Error) => logger.warn({ err: error.message }, 'slack: ephemeral message failed'));
  };

  app.action(APPROVE_ACTION, async ({ ack, body }) => {
    await ack();
    const parsed = blockActionSchema.safeParse(body);
    if (!parsed.success) return;
    const { user, channel, actions } = parsed.data;
    const id = actions[0]?.value ?? '';
    if (await foreign(body, id, 'approve', user)) return;
    const answer = await desk.decide(id, 'approve', reviewerOf(user)).catch((error: Error) => ({
      ok: false as const,
      message: `the approval could not be recorded (${error.message}); nothing changed, try again`,
    }));
    if (!answer.ok) await tell(channel?.id, user.id, answer.message);
    else if (answer.status === 'pending') await tell(channel?.id, user.id, answer.message);
  });

  app.action(REJECT_ACTION, async ({ ack, body }) => {
    await ack();
    const parsed = blockActionSchema.safeParse(body);
    if (!parsed.success) return;
    const { user, channel, actions, trigger_id } = parsed.data;
    const id = actions[0]?.value ?? '';
    if (await foreign(body, id, 'reject', user)) return;
    const reviewer = reviewerOf(user);
    try {
      // Checked before the modal opens, so a non-reviewer is told at once; the decision itself re-checks.
      const record = await store.get(id);
      if (!record)
        return tell(channel?.id, user.id, `no approval with id ${JSON.stringify(id.slice(0, 80))}`);
      if (record.status !== 'pending') {
        return tell(
          channel?.id,
          user.id,
          alreadyDecidedText(
            record.status,
            record.decidedByName || record.decidedBy || '',
            record.decidedAt ?? record.expiresAt,
          ),
        );
      }
      const check = await desk.vet(record, 'reject', reviewer);
      if (!check.ok) {
        // The desk audits the refusal and answers with the same words.
        const answer = await desk.decide(id, 'reject', reviewer);
        return tell(channel?.id, user.id, answer.message);
      }
      if (!trigger_id) return tell(channel?.id, user.id, 'cannot open the reason dialog (no trigger_id)');
      const modal = rejectModal(id, record.tool);
      modal.private_metadata = JSON.stringify({ id, ...(channel ? { channel: channel.id } : {}) });
      await api.openModal(trigger_id, modal);
    } catch (error) {
      logger.warn({ err: (error as Error).message, approvalId: id }, 'slack: reject click failed');
      await tell(
        channel?.id,
        user.id,
        `the rejection could not be started (${(error as Error).message}); nothing changed, try again`,
      );
    }
  });

  app.view(REJECT_MODAL, async ({ ack, body }) => {
    await ack();
    const parsed = viewSubmissionSchema.safeParse(body);
    if (!parsed.success) return;
    const { user, view } = parsed.data;
    let meta: z.infer<typeof modalMetaSchema>;
    try {
      meta = modalMetaSchema.parse(JSON.parse(view.private_metadata));
    } catch {
      return;
    }
    if (await foreign(body, meta.id, 'reject', user)) return;
    const reason = view.state?.values[REJECT_REASON_BLOCK]?.[REJECT_REASON_INPUT]?.value ?? '';
    const answer = await desk
      .decide(meta.id, 'reject', reviewerOf(user), reason.trim())
      .catch((error: Error) => ({
        ok: false as const,
        message: `the rejection could not be recorded (${error.message}); nothing changed, try again`,
      }));
    if (!answer.ok) await tell(meta.channel, user.id, answer.message);
  });

  app.error(async (error) => {
    logger.warn({ err: error.message }, 'slack: handler error');
  });

  return {
    ...(receiver ? { router: receiver.router, guard: timestampGuard(now, logger) } : {}),
    start: async () => {
      if (config.appToken) await app.start();
    },
    stop: async () => {
      if (config.appToken) await app.stop().catch(() => undefined);
    },
  };
}
