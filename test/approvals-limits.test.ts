/**
 * Rate limits around human approval: a call over its limit is refused before any reviewer is asked, and
 * approving a backlog runs it no faster than the tool's limit allows.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { startFakeSlack } from './support/fake-slack.js';
import type { FakeSlack } from './support/fake-slack.js';
import {
  AGENT_TOKEN,
  ALICE,
  CHANNEL,
  api,
  executions,
  sha,
  slackEnv,
  text,
  until,
} from './support/approvals.js';

const approval = { channel: CHANNEL, reviewers: [ALICE.id], wait: 'return', timeout: '5m', max_pending: 20 };
const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      limits: [{ counter: 'clone', window: 2, max: 2, scope: 'grant' }],
      approval,
    },
    ListClusters: {
      action: 'require_approval',
      limits: [{ counter: 'list', window: 4, max: 1, scope: 'grant' }],
      approval,
    },
    DescribeCluster: {
      action: 'require_approval',
      limits: [{ counter: 'describe', window: 'hour', max: 1, scope: 'grant' }],
      approval,
    },
  },
};

const approvalOf = (result: CallToolResult): string =>
  String((result._meta?.['countersign/approval'] as { id?: string } | undefined)?.id);

describe('rate limits and approvals', () => {
  let slack: FakeSlack;
  let gateway: TestGateway;
  let agent: Client;
  let dir: string;
  let log: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-approval-limits-'));
    log = path.join(dir, 'calls.jsonl');
    slack = await startFakeSlack();
    gateway = await startTestGateway({
      policies: { 'aws.json': POLICY },
      config: {
        servers: { aws: toyServer('aws.json', { env: { TOY_CALL_LOG: log } }) },
        grants: [{ id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) }],
        approvals: { poll_ms: 500 },
      },
      env: slackEnv(slack.apiUrl),
    });
    agent = await connectClient(`${gateway.url}/mcp`, { token: AGENT_TOKEN });
  });
  afterAll(async () => {
    await agent?.close();
    await gateway?.stop();
    await slack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const call = (name: string, args: Record<string, unknown>) =>
    agent.callTool({ name, arguments: args }, undefined, { timeout: 30_000 }) as Promise<CallToolResult>;

  it('a call over its limit is refused at once, and no reviewer is asked', async () => {
    const first = await call('DescribeCluster', { id: 'one' });
    await api(gateway.url, `/approvals/${approvalOf(first)}/approve`, {
      method: 'POST',
      body: { reviewer: ALICE.id },
    });
    await until(
      async () => ((await executions(log)).some((e) => e.args.id === 'one') ? true : undefined),
      10_000,
      'the execution',
    );
    expect(text(await call('DescribeCluster', { id: 'one' }))).toContain('"tool":"DescribeCluster"');

    const posts = slack.callsOf('chat.postMessage').length;
    const second = await call('DescribeCluster', { id: 'two' });
    expect(second.isError).toBe(true);
    expect(second._meta?.['countersign/decision']).toMatchObject({
      reason: 'rate_limited',
      retryAfterSeconds: expect.any(Number),
    });
    const pending = await api(gateway.url, '/approvals?status=pending');
    expect((pending.json.approvals as unknown[]).length).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(slack.callsOf('chat.postMessage').length).toBe(posts);
  });

  it('approving a backlog paces it by the limit (2 per 2 s), it does not burst it', async () => {
    const parked = await Promise.all(
      Array.from({ length: 6 }, (_, i) => call('CloneContainerToECR', { repositoryName: `backlog-${i}` })),
    );
    const ids = parked.map(approvalOf);
    expect(new Set(ids).size).toBe(6);
    const started = Date.now();
    await Promise.all(
      ids.map((id) =>
        api(gateway.url, `/approvals/${id}/approve`, { method: 'POST', body: { reviewer: ALICE.id } }),
      ),
    );
    await until(
      async () =>
        (await executions(log)).filter((e) => String(e.args.repositoryName).startsWith('backlog-')).length ===
        6
          ? true
          : undefined,
      20_000,
      'six executions',
    );
    // Six calls at two per 2-second window need at least three windows: the last starts 2 s or more after the first.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    const approved = (await gateway.services.audit.query({ type: 'decision', limit: 1000 })).filter(
      (e) => e.reason === 'approved' && e.tool === 'CloneContainerToECR',
    );
    expect(approved).toHaveLength(6);
    const perWindow = new Map<string, number>();
    for (const event of approved) {
      const counter = event.counters.find((c) => c.counter === 'clone');
      expect(counter?.count).toBeLessThanOrEqual(2);
      perWindow.set(counter?.key ?? '', (perWindow.get(counter?.key ?? '') ?? 0) + 1);
    }
    expect(perWindow.size).toBeGreaterThanOrEqual(3);
    expect([...perWindow.values()].every((n) => n <= 2)).toBe(true);
    // Each retry gets its own result.
    for (let i = 0; i < 6; i++)
      expect(text(await call('CloneContainerToECR', { repositoryName: `backlog-${i}` }))).toContain(
        `cloned into backlog-${i}`,
      );
  });

  it('an approved call whose session ends while it waits for its rate window is not used up: the retry runs it', async () => {
    // Start just after a 4 s window begins, so the second call surely waits for the next one.
    await new Promise((resolve) => setTimeout(resolve, 4000 - (Date.now() % 4000) + 100));
    const session = await connectClient(`${gateway.url}/mcp`, { token: AGENT_TOKEN });
    const park = async (client: Client, id: string) =>
      (await client.callTool({ name: 'ListClusters', arguments: { id } }, undefined, {
        timeout: 30_000,
      })) as CallToolResult;
    const ids = [approvalOf(await park(session, 'w-1')), approvalOf(await park(session, 'w-2'))];
    for (const id of ids)
      await api(gateway.url, `/approvals/${id}/approve`, { method: 'POST', body: { reviewer: ALICE.id } });
    await until(
      async () =>
        (await executions(log)).filter((e) => e.tool === 'ListClusters').length === 1 ? true : undefined,
      5000,
      'one run',
    );
    const waiting = (await executions(log)).some((e) => e.args.id === 'w-1') ? 'w-2' : 'w-1';
    // End the MCP session on the gateway (DELETE), as a client that goes away cleanly does.
    await (session.transport as StreamableHTTPClientTransport).terminateSession();
    await session.close();
    const waitingId = ids[waiting === 'w-1' ? 0 : 1] ?? '';
    await until(
      async () =>
        (await api(gateway.url, `/approvals/${waitingId}`)).json.execution === 'none' ? true : undefined,
      5000,
      'the claim given back',
    );

    const result = await call('ListClusters', { id: waiting });
    expect(result.isError).toBeFalsy();
    expect(text(result)).toContain(`"id":"${waiting}"`);
    expect((await executions(log)).filter((e) => e.args.id === waiting)).toHaveLength(1);
  }, 30_000);
});
