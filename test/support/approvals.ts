import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { FakeSlack, SlackCall, SlackUser } from './fake-slack.js';

export const SIGNING_SECRET = 'test-signing-secret-0123456789';
export const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
export const AGENT_TOKEN = 'agent-token-0123456789';
export const CHANNEL = 'C0APPROVALS';

export const ALICE: SlackUser = { id: 'UALICE', username: 'alice' };
export const BOB: SlackUser = { id: 'UBOB', username: 'bob' };
/** Listed as a reviewer, but owns the agent's grant (matched through users.info email). */
export const OWNER: SlackUser = { id: 'UOWNER', username: 'olga' };
export const MALLORY: SlackUser = { id: 'UMALLORY', username: 'mallory' };
export const OWNER_EMAIL = 'olga@example.com';

export const sha = (token: string): string => createHash('sha256').update(token).digest('hex');
export const text = (result: CallToolResult): string => (result.content[0] as { text: string }).text;

/** The workspace and app the fake Slack's payloads come from (clickPayload, rejectSubmission). */
export const TEAM_ID = 'T1';
export const APP_ID = 'A1';

export function slackEnv(apiUrl: string): NodeJS.ProcessEnv {
  return {
    SLACK_BOT_TOKEN: 'xoxb-test-token',
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: apiUrl,
    SLACK_TEAM_ID: TEAM_ID,
    SLACK_APP_ID: APP_ID,
    COUNTERSIGN_ADMIN_TOKEN: ADMIN_TOKEN,
  };
}

/** The approval id carried by the Approve button of a posted approval message. */
export function approvalIdOf(call: SlackCall): string {
  const blocks = call.body.blocks as { type: string; elements?: { action_id: string; value: string }[] }[];
  const actions = blocks.find((b) => b.type === 'actions');
  const approve = actions?.elements?.find((e) => e.action_id === 'countersign_approve');
  if (!approve) throw new Error('no Approve button in the message');
  return approve.value;
}

/**
 * The id of the approval message Slack accepted whose blocks mention `marker` (an argument value of the parked
 * call); failed posts and thread replies are skipped.
 */
export async function postedApprovalId(
  slack: FakeSlack,
  marker: string,
  timeoutMs = 20_000,
): Promise<string> {
  return approvalIdOf(
    await slack.waitFor(
      'chat.postMessage',
      (c) =>
        c.status === 200 &&
        c.body.thread_ts === undefined &&
        JSON.stringify(c.body.blocks ?? '').includes(marker),
      timeoutMs,
    ),
  );
}

export interface Execution {
  tool: string;
  args: Record<string, unknown>;
  pid: number;
  at: number;
}

/** Tool executions recorded by the toy server(s) through TOY_CALL_LOG. */
export async function executions(logFile: string): Promise<Execution[]> {
  const content = await readFile(logFile, 'utf8').catch(() => '');
  return content
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Execution);
}

export async function api(
  gatewayUrl: string,
  path: string,
  options: { method?: string; body?: unknown; token?: string } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${gatewayUrl}/api${path}`, {
    method: options.method ?? 'GET',
    headers: {
      authorization: `Bearer ${options.token ?? ADMIN_TOKEN}`,
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(options.body !== undefined
      ? { body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }
      : {}),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

export async function until<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
