/**
 * Issue 13's "single use means single use" and "nothing reaches an upstream unpoliced", tried as an agent with
 * a grant would: retries spread over two gateway processes that share one Redis, cancellations followed by
 * retries, a task and a held request for the same approval, a retry right after the result was handed out;
 * method names spelled to look like tools/call, ids of odd types, batches mixing a notification-shaped call
 * with requests. Real `countersign serve` processes and gateways, real Redis, the SDK's client, a toy upstream
 * that logs every execution and a recording upstream that logs every message it receives.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema, ErrorCode } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startServe } from '../support/cli.js';
import type { ServeProcess } from '../support/cli.js';
import { connectClient, startTestGateway, toyServer } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import { openRawSession, toolCallBody } from './raw-mcp.js';
import type { RawSession } from './raw-mcp.js';
import { reachedUpstream, recordingServer, waitForRecorded } from './recording.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from '../support/redis.js';
import { ADMIN_TOKEN, AGENT_TOKEN, api, executions, sha, text, until } from '../support/approvals.js';

const reviewers = ['alice', 'bob'];
const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    // Returned: the request answers "pending" at once; the agent's identical retry picks up the outcome.
    DescribeCluster: {
      action: 'require_approval',
      approval: { reviewers, wait: 'return', timeout: '5m', max_pending: 100 },
    },
    // Held: the request waits for the person.
    DeleteCluster: {
      action: 'require_approval',
      approval: { reviewers, wait: 'hold', timeout: '5m', max_pending: 100 },
    },
  },
};

const decisionOf = (result: CallToolResult): { reason?: string } =>
  (result._meta?.['countersign/decision'] as { reason?: string } | undefined) ?? {};
const approvalOf = (result: CallToolResult): string =>
  String((result._meta?.['countersign/approval'] as { id?: string } | undefined)?.id);

describe('single use across two gateway processes sharing Redis', () => {
  let dir: string;
  let log: string;
  let a: ServeProcess;
  let b: ServeProcess;
  const clients: Client[] = [];
  const prefix = uniquePrefix('approval-attacks');

  const agent = async (replica: ServeProcess): Promise<Client> => {
    const client = await connectClient(`${replica.url}/mcp`, { token: AGENT_TOKEN });
    clients.push(client);
    return client;
  };
  const ran = async (tool: string, id: string): Promise<number> =>
    (await executions(log)).filter((e) => e.tool === tool && e.args.id === id).length;
  const approve = async (id: string, via: ServeProcess = a): Promise<void> => {
    const answer = await api(via.url, `/approvals/${id}/approve`, {
      method: 'POST',
      body: { reviewer: 'alice' },
    });
    expect(answer.status, `${JSON.stringify(answer.json)}\n${via.log().slice(-1500)}`).toBe(200);
  };
  const pendingFor = (tool: string, marker: string): Promise<string> =>
    until(
      async () => {
        const listed = await api(a.url, '/approvals?status=pending&limit=500');
        const approvals = listed.json.approvals as { id: string; tool: string; args: { id?: string } }[];
        return approvals.find((x) => x.tool === tool && x.args.id === marker)?.id;
      },
      15_000,
      `a pending approval of ${tool} ${marker}`,
    );
  /** Twelve clients, six on each process, all calling the same tool with the same arguments at once. */
  const twelveRetries = async (tool: string, marker: string): Promise<CallToolResult[]> => {
    const racers = await Promise.all(Array.from({ length: 12 }, (_, i) => agent(i % 2 === 0 ? a : b)));
    return (await Promise.all(
      racers.map((c) =>
        c.callTool({ name: tool, arguments: { id: marker } }, undefined, { timeout: 60_000 }),
      ),
    )) as CallToolResult[];
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-approval-attacks-'));
    log = path.join(dir, 'calls.jsonl');
    await writeFile(path.join(dir, 'p.json'), JSON.stringify(POLICY));
    const configFile = path.join(dir, 'countersign.json');
    await writeFile(
      configFile,
      JSON.stringify({
        listen: { port: 0 },
        redis: { url: testRedisUrl(), prefix },
        servers: { aws: toyServer('p.json', { env: { TOY_CALL_LOG: log } }) },
        grants: [{ id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) }],
        approvals: { poll_ms: 200, task_poll_interval_ms: 100 },
      }),
    );
    const env = { LOG_LEVEL: 'warn', COUNTERSIGN_ADMIN_TOKEN: ADMIN_TOKEN };
    [a, b] = await Promise.all([
      startServe(configFile, { cwd: dir, env }),
      startServe(configFile, { cwd: dir, env }),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    for (const replica of [a, b]) if (replica?.child.exitCode === null) replica.child.kill('SIGKILL');
    const redis = await connectTestRedis();
    await dropPrefix(redis, prefix);
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  it('12 concurrent retries after approval, six on each process: the upstream runs once, one retry gets the result', async () => {
    const first = await agent(a);
    const id = approvalOf(
      (await first.callTool({ name: 'DescribeCluster', arguments: { id: 'two-procs' } })) as CallToolResult,
    );
    await endSession(first);
    await approve(id, b);
    const answers = await twelveRetries('DescribeCluster', 'two-procs');
    expect(answers.filter((r) => !r.isError).map(text)).toEqual([
      expect.stringContaining('"id":"two-procs"'),
    ]);
    expect(answers.filter((r) => decisionOf(r).reason === 'approval_used')).toHaveLength(11);
    expect(await ran('DescribeCluster', 'two-procs')).toBe(1);
  });

  it('12 retries racing the background run of the parking session (still open on one process): runs once, one result', async () => {
    const first = await agent(a);
    const id = approvalOf(
      (await first.callTool({ name: 'DescribeCluster', arguments: { id: 'racing-run' } })) as CallToolResult,
    );
    // The parking session stays open: on approval its process runs the call at once, while the retries come in.
    const [, answers] = await Promise.all([approve(id, b), twelveRetries('DescribeCluster', 'racing-run')]);
    // Retries that came before the approval are told "pending"; the others race for the one result. Those still
    // pending retry until everyone has an outcome.
    let outcomes = answers;
    for (let round = 0; round < 20 && outcomes.some((r) => isPending(r)); round++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      const again = await Promise.all(
        outcomes.map(async (r, i) =>
          isPending(r)
            ? ((await (clients[clients.length - 12 + i] as Client).callTool({
                name: 'DescribeCluster',
                arguments: { id: 'racing-run' },
              })) as CallToolResult)
            : r,
        ),
      );
      outcomes = again;
    }
    expect(outcomes.filter((r) => !r.isError)).toHaveLength(1);
    expect(outcomes.filter((r) => decisionOf(r).reason === 'approval_used')).toHaveLength(11);
    expect(await ran('DescribeCluster', 'racing-run')).toBe(1);
  });

  it('a retry right after the result was handed out is told it was used, and nothing runs again', async () => {
    const first = await agent(a);
    const id = approvalOf(
      (await first.callTool({ name: 'DescribeCluster', arguments: { id: 'just-used' } })) as CallToolResult,
    );
    await endSession(first);
    await approve(id);
    const taker = await agent(b);
    const got = (await taker.callTool({
      name: 'DescribeCluster',
      arguments: { id: 'just-used' },
    })) as CallToolResult;
    expect(got.isError).toBeFalsy();
    const again = (await (
      await agent(a)
    ).callTool({
      name: 'DescribeCluster',
      arguments: { id: 'just-used' },
    })) as CallToolResult;
    expect(decisionOf(again).reason).toBe('approval_used');
    expect(await ran('DescribeCluster', 'just-used')).toBe(1);
  });

  it('a held call cancelled by the agent (notifications/cancelled), then approved: its retry gets the result, once', async () => {
    const client = await agent(a);
    const abort = new AbortController();
    const held = client
      .callTool({ name: 'DeleteCluster', arguments: { id: 'cancelled-held' } }, undefined, {
        signal: abort.signal,
      })
      .catch((error: unknown) => error);
    const id = await pendingFor('DeleteCluster', 'cancelled-held');
    abort.abort('the agent gave up');
    await held;
    await approve(id, b);
    const [retryA, retryB] = (await Promise.all([
      (await agent(a)).callTool({ name: 'DeleteCluster', arguments: { id: 'cancelled-held' } }),
      (await agent(b)).callTool({ name: 'DeleteCluster', arguments: { id: 'cancelled-held' } }),
    ])) as CallToolResult[];
    const answers = [retryA as CallToolResult, retryB as CallToolResult];
    expect(answers.filter((r) => !r.isError)).toHaveLength(1);
    expect(answers.filter((r) => decisionOf(r).reason === 'approval_used')).toHaveLength(1);
    expect(await ran('DeleteCluster', 'cancelled-held')).toBe(1);
  });

  it('tasks/cancel, then the identical call: a person is asked again, and the cancelled approval never runs', async () => {
    const client = await agent(a);
    const created = await client.request(
      {
        method: 'tools/call',
        params: { name: 'DeleteCluster', arguments: { id: 'task-cancelled' }, task: {} },
      },
      CreateTaskResultSchema,
    );
    const id = await pendingFor('DeleteCluster', 'task-cancelled');
    await client.experimental.tasks.cancelTask(created.task.taskId);
    // The retry (held, on the other process) parks a new approval rather than reusing the cancelled one.
    const retry = (await agent(b)).callTool(
      { name: 'DeleteCluster', arguments: { id: 'task-cancelled' } },
      undefined,
      { timeout: 60_000 },
    ) as Promise<CallToolResult>;
    const second = await until(
      async () => {
        const fresh = await pendingFor('DeleteCluster', 'task-cancelled');
        return fresh !== id ? fresh : undefined;
      },
      15_000,
      'a new approval for the retry',
    );
    // A click on the cancelled approval changes nothing.
    const late = await api(a.url, `/approvals/${id}/approve`, {
      method: 'POST',
      body: { reviewer: 'alice' },
    });
    expect(late.status).toBe(409);
    expect(await ran('DeleteCluster', 'task-cancelled')).toBe(0);
    await approve(second);
    expect((await retry).isError).toBeFalsy();
    expect(await ran('DeleteCluster', 'task-cancelled')).toBe(1);
  });

  it('a task and a held request for the same approval, on different processes: runs once, one of them gets the result', async () => {
    const holder = await agent(a);
    const held = holder.callTool({ name: 'DeleteCluster', arguments: { id: 'task-and-held' } }, undefined, {
      timeout: 60_000,
    }) as Promise<CallToolResult>;
    const id = await pendingFor('DeleteCluster', 'task-and-held');
    const tasker = await agent(b);
    const created = await tasker.request(
      {
        method: 'tools/call',
        params: { name: 'DeleteCluster', arguments: { id: 'task-and-held' }, task: {} },
      },
      CreateTaskResultSchema,
    );
    await approve(id);
    const [heldAnswer, taskAnswer] = (await Promise.all([
      held,
      tasker.experimental.tasks.getTaskResult(created.task.taskId, CallToolResultSchema),
    ])) as [CallToolResult, CallToolResult];
    const results = [heldAnswer, taskAnswer].filter((r) => !r.isError);
    expect(results).toHaveLength(1);
    expect(text(results[0] as CallToolResult)).toContain('"id":"task-and-held"');
    expect(await ran('DeleteCluster', 'task-and-held')).toBe(1);
  });
});

function isPending(result: CallToolResult): boolean {
  return (
    (result._meta?.['countersign/approval'] as { status?: string } | undefined)?.status !== undefined &&
    !result.isError &&
    !text(result).includes('"id"')
  );
}

/** Ends the client's session at the gateway (DELETE), not just its connection. */
async function endSession(client: Client): Promise<void> {
  await (client.transport as StreamableHTTPClientTransport).terminateSession();
  await client.close();
}

/** Method names an agent might try to slip past the allow-list, each with a marker that must never reach an upstream. */
const LOOK_ALIKES = [
  'tools/call\u0000',
  't\u043e\u043els/call', // Cyrillic o
  'tools/call\u200b', // zero-width space
  'tools\uff0fcall', // fullwidth solidus
  ' tools/call',
  'tools/call\n',
  'tools/call\t',
  'TOOLS/call',
];

describe('odd spellings, odd ids and mixed batches never reach an upstream', () => {
  let gateway: TestGateway;
  let dir: string;
  let recFile: string;
  const sessions: RawSession[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-spellings-'));
    recFile = path.join(dir, 'rec.jsonl');
    gateway = await startTestGateway({
      policies: { 'allow-all.json': { version: '1', default: 'allow' } },
      config: {
        servers: { rec: recordingServer('allow-all.json', recFile) },
        grants: [{ id: 'agent', owner: 'agent-owner', token_env: 'AGENT_TOKEN' }],
      },
      env: { AGENT_TOKEN: 'agent-token-0123456789' },
    });
  }, 60_000);
  afterAll(async () => {
    for (const session of sessions) await session.close().catch(() => undefined);
    await gateway?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const open = async (): Promise<RawSession> => {
    const session = await openRawSession(`${gateway.url}/mcp/rec`, {
      authorization: 'Bearer agent-token-0123456789',
    });
    sessions.push(session);
    return session;
  };
  /** A call that does reach the upstream: anything posted before it, had it been relayed, is recorded by then. */
  const barrier = async (session: RawSession): Promise<void> => {
    const label = `barrier-${randomUUID()}`;
    const answer = await session.post(toolCallBody(999_999, 'echo', { label }));
    expect(answer.status).toBe(200);
    await waitForRecorded(recFile, (m) => JSON.stringify(m).includes(label));
  };

  it('look-alike method names (NUL, homoglyphs, zero-width, whitespace) get -32601 as requests and are dropped as notifications', async () => {
    const session = await open();
    const secret = `look-alike-${randomUUID()}`;
    for (const [i, method] of LOOK_ALIKES.entries()) {
      const params = { name: 'echo', arguments: { secret } };
      const asRequest = await session.post(JSON.stringify({ jsonrpc: '2.0', id: i + 1, method, params }));
      expect(JSON.stringify(asRequest.messages), JSON.stringify(method)).toContain(
        `"code":${ErrorCode.MethodNotFound}`,
      );
      const asNotification = await session.post(JSON.stringify({ jsonrpc: '2.0', method, params }));
      expect(asNotification.status, JSON.stringify(method)).toBe(202);
    }
    await barrier(session);
    expect(await reachedUpstream([recFile], secret)).toBe(false);
  });

  it('a tools/call with an id of an odd type (null, fraction, boolean, object) is refused whole and never runs', async () => {
    const session = await open();
    const secret = `odd-id-${randomUUID()}`;
    for (const id of [null, 1.5, true, { nested: 1 }, [1]]) {
      const answer = await session.post(
        JSON.stringify({
          jsonrpc: '2.0',
          id,
          method: 'tools/call',
          params: { name: 'echo', arguments: { secret } },
        }),
      );
      expect(answer.status, JSON.stringify(id)).toBe(400);
    }
    await barrier(session);
    expect(await reachedUpstream([recFile], secret)).toBe(false);
  });

  it('a batch mixing a notification-shaped tools/call with requests runs only the requests', async () => {
    const session = await open();
    const hidden = `batched-notification-${randomUUID()}`;
    const asked = `batched-request-${randomUUID()}`;
    const answer = await session.post(
      JSON.stringify([
        { jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'echo', arguments: { asked } } },
        { jsonrpc: '2.0', method: 'tools/call', params: { name: 'echo', arguments: { hidden } } },
        { jsonrpc: '2.0', id: 'b', method: 'ping' },
      ]),
    );
    expect(answer.status).toBe(200);
    await barrier(session);
    expect(await reachedUpstream([recFile], hidden)).toBe(false);
  });
});
