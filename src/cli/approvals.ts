/**
 * `countersign approvals list|show|approve|reject`: deciding without Slack, through the gateway's approvals
 * API (so the same reviewer rules, audit and Slack message updates apply as for a click).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { loadRawConfig } from '../config/load.js';
import type { RawConfig } from '../config/schema.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

export interface ApprovalsCliOptions {
  config: string;
  url?: string;
  token?: string;
  json?: boolean;
}

const approvalSchema = z
  .object({
    id: z.string(),
    status: z.string(),
    server: z.string(),
    tool: z.string(),
    grant: z.string(),
    owner: z.string(),
    createdAt: z.string(),
    expiresAt: z.string(),
    votes: z.number(),
    quorum: z.number(),
    reviewers: z.array(z.string()),
    channel: z.string().optional(),
    decidedBy: z.string().optional(),
    decidedByName: z.string().optional(),
    decidedAt: z.string().optional(),
    decisionReason: z.string().optional(),
    execution: z.string(),
    outcome: z.string().optional(),
    args: z.unknown(),
    rule: z.string(),
    message: z.string(),
  })
  .passthrough();
type ApprovalView = z.infer<typeof approvalSchema>;

/** Where the gateway listens, from its config (a wildcard address is reached on loopback). */
function urlFromConfig(config: RawConfig): string {
  const { host, port } = config.listen;
  if (port === 0) throw new Error('the config listens on port 0 (any free port): pass --url');
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${shown}:${port}`;
}

async function resolveToken(options: ApprovalsCliOptions, config: RawConfig): Promise<string> {
  if (options.token) return options.token;
  if (process.env.COUNTERSIGN_ADMIN_TOKEN) return process.env.COUNTERSIGN_ADMIN_TOKEN;
  const file = path.resolve(config.data_dir, ADMIN_TOKEN_FILE);
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    throw new Error(
      `no admin token: pass --token, set COUNTERSIGN_ADMIN_TOKEN, or run this where ${file} exists (serve writes it for a loopback-only gateway)`,
    );
  }
}

async function request(
  options: ApprovalsCliOptions,
  route: string,
  init: { method?: string; body?: unknown } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const config = await loadRawConfig(options.config);
  const base = (options.url ?? urlFromConfig(config)).replace(/\/+$/, '');
  const token = await resolveToken(options, config);
  let res: Response;
  try {
    res = await fetch(`${base}/api${route}`, {
      method: init.method ?? 'GET',
      headers: {
        authorization: `Bearer ${token}`,
        ...(init.body ? { 'content-type': 'application/json' } : {}),
      },
      ...(init.body ? { body: JSON.stringify(init.body) } : {}),
    });
  } catch (error) {
    throw new Error(`cannot reach the gateway at ${base}: ${(error as Error).message}`);
  }
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  return { status: res.status, json };
}

function failure(status: number, json: Record<string, unknown>): string {
  return `${typeof json.error === 'string' ? json.error : 'request failed'} (HTTP ${status})`;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((r) => (r[col] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r.map((cell, col) => (col === r.length - 1 ? cell : cell.padEnd(widths[col] ?? 0))).join('  '),
    )
    .join('\n');
}

// eslint-disable-next-line no-control-regex
const printable = (text: string): string => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');

function describe(a: ApprovalView): string {
  const lines = [
    `approval  ${a.id}`,
    `status    ${a.status}${a.quorum > 1 ? ` (${a.votes} of ${a.quorum} approvals)` : ''}`,
    `call      ${a.server}/${a.tool} by grant ${a.grant} (owner ${a.owner})`,
    `arguments ${JSON.stringify(a.args)}`,
    `why       ${a.message}`,
    `rule      ${a.rule}`,
    `reviewers ${a.reviewers.join(', ')}${a.channel ? ` (Slack channel ${a.channel})` : ''}`,
    `created   ${a.createdAt}`,
    `expires   ${a.expiresAt}`,
  ];
  if (a.decidedAt)
    lines.push(
      `decided   ${a.status} by ${a.decidedByName || a.decidedBy || 'the gateway'} at ${a.decidedAt}${a.decisionReason ? `: ${a.decisionReason}` : ''}`,
    );
  if (a.execution !== 'none') lines.push(`execution ${a.execution}${a.outcome ? ` (${a.outcome})` : ''}`);
  return lines.map(printable).join('\n');
}

export async function approvalsList(
  options: ApprovalsCliOptions & { status?: string; limit?: string },
  out: (text: string) => void,
): Promise<number> {
  const query = new URLSearchParams();
  if (options.status) query.set('status', options.status);
  if (options.limit) query.set('limit', options.limit);
  const { status, json } = await request(options, `/approvals${query.size ? `?${query}` : ''}`);
  if (status !== 200) {
    out(failure(status, json));
    return 1;
  }
  const approvals = z.array(approvalSchema).parse(json.approvals);
  if (options.json) {
    out(approvals.map((a) => JSON.stringify(a)).join('\n'));
    return 0;
  }
  if (approvals.length === 0) {
    out('no approvals match');
    return 0;
  }
  out(
    table([
      ['ID', 'STATUS', 'SERVER/TOOL', 'GRANT', 'CREATED', 'EXPIRES'],
      ...approvals.map((a) =>
        [a.id, a.status, `${a.server}/${a.tool}`, a.grant, a.createdAt, a.expiresAt].map(printable),
      ),
    ]),
  );
  return 0;
}

export async function approvalsShow(
  id: string,
  options: ApprovalsCliOptions,
  out: (text: string) => void,
): Promise<number> {
  const { status, json } = await request(options, `/approvals/${encodeURIComponent(id)}`);
  if (status !== 200) {
    out(failure(status, json));
    return 1;
  }
  const approval = approvalSchema.parse(json);
  out(options.json ? JSON.stringify(approval) : describe(approval));
  return 0;
}

export async function approvalsDecide(
  verdict: 'approve' | 'reject',
  id: string,
  options: ApprovalsCliOptions & { reviewer: string; reason?: string },
  out: (text: string) => void,
): Promise<number> {
  const { status, json } = await request(options, `/approvals/${encodeURIComponent(id)}/${verdict}`, {
    method: 'POST',
    body: { reviewer: options.reviewer, ...(options.reason ? { reason: options.reason } : {}) },
  });
  if (status !== 200) {
    out(failure(status, json));
    return 1;
  }
  out(options.json ? JSON.stringify(json) : printable(`${id}: ${String(json.message)}`));
  return 0;
}
