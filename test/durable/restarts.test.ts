/**
 * Restarts and crashes with calls parked for approval, with real processes: `countersign serve` children that
 * are killed for real (SIGKILL, SIGTERM), real Redis, the fake Slack API, and the SDK client (tasks and plain
 * calls). Nothing parked is lost, nothing approved runs twice, nothing unapproved runs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult, CreateTaskResult } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../../src/audit/log.js';
import { startServe, writeServeFiles } from '../support/cli.js';
import type { ServeProcess } from '../support/cli.js';
import { clickPayload, postInteraction, startFakeSlack } from '../support/fake-slack.js';
import type { FakeSlack } from '../support/fake-slack.js';
import { connectClient, toyServer } from '../support/gateway.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from '../support/redis.js';
import {
  AGENT_TOKEN,
  ALICE,
  CHANNEL,
  SIGNING_SECRET,
  api,
  postedApprovalId,
  executions,
  sha,
  slackEnv,
  text,
  until,
} from '../support/approvals.js';

const BURST_TOKEN = 'burst-token-0123456789';

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold', timeout: '5m' },
    },
    sleep: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold', timeout: '5m' },
    },
    DeleteCluster: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold', timeout: 3 },
    },
    DescribeCluster: { action: 'allow' },
    ListClusters: {
      action: 'require_approval',
      approval: { reviewers: [ALICE.id], wait: 'hold', timeout: '5m', max_pending: 1000 },
    },
  },
};

describe('restarts and crashes with parked calls (serve child processes)', () => {
  let dir: string;
  let log: string;
  let configFile: string;
  let slack: FakeSlack;
  const prefix = uniquePrefix('restarts');
  const processes: ServeProcess[] = [];
  const clients: Client[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-restarts-'));
    log = path.join(dir, 'calls.jsonl');
    slack = await startFakeSlack();
    configFile = await writeServeFiles(
      dir,
      {
        listen: { port: 0 },
        redis: { url: testRedisUrl(), prefix },
        servers: { aws: toyServer('p.json', { env: { TOY_CALL_LOG: log } }) },
        grants: [
          { id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) },
          // The burst tests' own grant: their parked calls do not count against deploy-bot's max_pending.
          { id: 'burst-bot', owner: 'olga@example.com', token_sha256: sha(BURST_TOKEN) },
        ],
        approvals: { poll_ms: 200, liveness_ms: 2000, task_poll_interval_ms: 100 },
        shutdown_grace_ms: 8000,
      },
      { 'p.json': POLICY },
    );
  }, 30_000);

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    for (const p of processes.splice(0)) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  });

  afterAll(async () => {
    const redis = await connectTestRedis();
    await dropPrefix(redis, prefix);
    redis.disconnect();
    await slack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function gateway(): Promise<ServeProcess> {
    const started = await startServe(configFile, {
      cwd: dir,
      env: { LOG_LEVEL: 'warn', ...slackEnv(slack.apiUrl) },
    });
    processes.push(started);
    return started;
  }

  async function agentOf(g: ServeProcess, token = AGENT_TOKEN): Promise<Client> {
    const client = await connectClient(`${g.url}/mcp`, { token });
    clients.push(client);
    return client;
  }

  /** Sends `signal` to a gateway; resolves with its exit code once it has exited. */
  function stop(g: ServeProcess, signal: 'SIGTERM' | 'SIGKILL'): Promise<number | null> {
    const exited = new Promise<number | null>((resolve) => g.child.once('exit', resolve));
    g.child.kill(signal);
    return exited;
  }

  /** `count` ListClusters calls at once (ids `<label>-<n>`); each resolves with its answer's text, or error. */
  function callBurst(agent: Client, label: string, count: number): Promise<string>[] {
    return Array.from({ length: count }, (_, i) =>
      agent
        .callTool({ name: 'ListClusters', arguments: { id: `${label}-${i}` } }, undefined, {
          timeout: 60_000,
        })
        .then(
          (result) => text(result as CallToolResult),
          (error: Error) => `error: ${error.message}`,
        ),
    );
  }

  function asTask(agent: Client, name: string, args: Record<string, unknown>): Promise<CreateTaskResult> {
    return agent.request(
      { method: 'tools/call', params: { name, arguments: args, task: {} } },
      CreateTaskResultSchema,
    );
  }

  const ran = async (tool: string, key: string, value: unknown): Promise<number> =>
    (await executions(log)).filter((e) => e.tool === tool && e.args[key] === value).length;

  /** ListClusters approvals requested since `since` (ms), by the audit trail. */
  async function requested(since: number): Promise<number> {
    const events = await auditEvents({ tool: 'ListClusters', type: 'approval', limit: 10_000 });
    return events.filter((e) => e.reason === 'approval_requested' && Date.parse(e.time) >= since).length;
  }

  async function auditEvents(
    filter: Parameters<AuditLog['query']>[0] = {},
  ): Promise<Awaited<ReturnType<AuditLog['query']>>> {
    const redis = await connectTestRedis();
    try {
      return await new AuditLog({ redis, prefix }).query(filter);
    } finally {
      redis.disconnect();
    }
  }

  it('kill -9 with parked calls: still pending after restart, the Slack buttons work, each runs once', async () => {
    const a = await gateway();
    const agentA = await agentOf(a);
    const task = await asTask(agentA, 'CloneContainerToECR', { repositoryName: 'k9-task' });
    const held = agentA
      .callTool({ name: 'CloneContainerToECR', arguments: { repositoryName: 'k9-held' } }, undefined, {
        timeout: 60_000,
      })
      .catch((error: Error) => error);
    const taskApproval = await postedApprovalId(slack, 'k9-task', 15_000);
    const heldApproval = await postedApprovalId(slack, 'k9-held', 15_000);

    await stop(a, 'SIGKILL');

    const b = await gateway();
    const pending = await api(b.url, '/approvals?status=pending');
    const ids = (pending.json.approvals as { id: string }[]).map((x) => x.id);
    expect(ids).toEqual(expect.arrayContaining([taskApproval, heldApproval]));

    const agentB = await agentOf(b);
    expect((await agentB.experimental.tasks.getTask(task.task.taskId)).status).toBe('working');
    for (const id of [taskApproval, heldApproval]) {
      const res = await postInteraction(
        b.url,
        SIGNING_SECRET,
        clickPayload('countersign_approve', id, ALICE),
      );
      expect(res.status).toBe(200);
    }
    // The task gets its result (the background runner ran it with no request open)…
    const result = (await agentB.experimental.tasks.getTaskResult(task.task.taskId, CallToolResultSchema, {
      timeout: 30_000,
    })) as CallToolResult;
    expect(text(result)).toContain('cloned into k9-task');
    // …and the held call's identical retry gets its outcome.
    const retry = (await agentB.callTool(
      { name: 'CloneContainerToECR', arguments: { repositoryName: 'k9-held' } },
      undefined,
      { timeout: 30_000 },
    )) as CallToolResult;
    expect(text(retry)).toContain('cloned into k9-held');
    expect(await ran('CloneContainerToECR', 'repositoryName', 'k9-task')).toBe(1);
    expect(await ran('CloneContainerToECR', 'repositoryName', 'k9-held')).toBe(1);
    // The request that was held on the killed process never got a result of its own.
    await agentA.close();
    expect(await held).toBeInstanceOf(Error);
  }, 90_000);

  it('a crash while an approved call runs upstream: marked interrupted, never run again, agent and Slack told, audited', async () => {
    const a = await gateway();
    const agentA = await agentOf(a);
    const task = await asTask(agentA, 'sleep', { ms: 4000 });
    const id = await postedApprovalId(slack, '4000', 15_000);
    // A plain held call too: it runs in the session that holds it, not in the background runner.
    const held = agentA
      .callTool({ name: 'sleep', arguments: { ms: 4001 } }, undefined, { timeout: 60_000 })
      .catch((error: Error) => error);
    const heldId = await postedApprovalId(slack, '4001', 15_000);
    for (const approval of [id, heldId])
      await postInteraction(a.url, SIGNING_SECRET, clickPayload('countersign_approve', approval, ALICE));
    await until(
      async () =>
        (await ran('sleep', 'ms', 4000)) === 1 && (await ran('sleep', 'ms', 4001)) === 1 ? true : undefined,
      15_000,
      'both calls to start',
    );
    await stop(a, 'SIGKILL');

    const b = await gateway();
    const agentB = await agentOf(b);
    const result = (await agentB.experimental.tasks.getTaskResult(task.task.taskId, CallToolResultSchema, {
      timeout: 30_000,
    })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(text(result)).toContain('was interrupted');
    expect(text(result)).toContain('it was not run again');
    const status = await agentB.experimental.tasks.getTask(task.task.taskId);
    expect(status.status).toBe('failed');
    expect(status.statusMessage).toContain('Interrupted');
    await slack.waitFor(
      'chat.postMessage',
      (c) => c.body.thread_ts !== undefined && JSON.stringify(c.body).includes('Interrupted'),
      10_000,
    );
    const record = await api(b.url, `/approvals/${id}`);
    expect(record.json).toMatchObject({ status: 'approved', execution: 'interrupted' });
    // The held call's retry (its request died with the process) is told it was interrupted.
    const heldRetry = (await agentB.callTool({ name: 'sleep', arguments: { ms: 4001 } }, undefined, {
      timeout: 30_000,
    })) as CallToolResult;
    expect(text(heldRetry)).toContain('was interrupted');
    expect((await api(b.url, `/approvals/${heldId}`)).json).toMatchObject({ execution: 'interrupted' });
    const events = await auditEvents();
    expect(
      events.some((e) => e.approvalId === id && e.type === 'result' && e.outcome === 'interrupted'),
    ).toBe(true);
    // Long after the sweep, still exactly one start: no stalled-job retry, no second run.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await ran('sleep', 'ms', 4000)).toBe(1);
    expect(await ran('sleep', 'ms', 4001)).toBe(1);
    await agentA.close();
    expect(await held).toBeInstanceOf(Error);
  }, 90_000);

  it('SIGTERM: a held request is told "pending", its approval stays parked, a call in flight finishes', async () => {
    const a = await gateway();
    const agentA = await agentOf(a);
    const running = await asTask(agentA, 'sleep', { ms: 1500 });
    const runningId = await postedApprovalId(slack, '1500', 15_000);
    await postInteraction(a.url, SIGNING_SECRET, clickPayload('countersign_approve', runningId, ALICE));
    await until(
      async () => ((await ran('sleep', 'ms', 1500)) === 1 ? true : undefined),
      15_000,
      'the call to start',
    );
    const held = agentA.callTool(
      { name: 'CloneContainerToECR', arguments: { repositoryName: 'term-held' } },
      undefined,
      { timeout: 60_000 },
    ) as Promise<CallToolResult>;
    const heldId = await postedApprovalId(slack, 'term-held', 15_000);

    const exited = stop(a, 'SIGTERM');
    const answer = await held;
    expect(text(answer)).toContain(`Approval pending (id ${heldId})`);
    expect(await exited).toBe(0);

    const b = await gateway();
    const agentB = await agentOf(b);
    // The call that was running finished within the grace period, and its task has the result.
    const finished = await agentB.experimental.tasks.getTask(running.task.taskId);
    expect(finished.status).toBe('completed');
    const result = (await agentB.experimental.tasks.getTaskResult(
      running.task.taskId,
      CallToolResultSchema,
    )) as CallToolResult;
    expect(text(result)).toBe('slept 1500');
    // The held call's approval is still pending (not rejected), and a decision still runs it once.
    expect((await api(b.url, `/approvals/${heldId}`)).json).toMatchObject({ status: 'pending' });
    await postInteraction(b.url, SIGNING_SECRET, clickPayload('countersign_approve', heldId, ALICE));
    const retry = (await agentB.callTool(
      { name: 'CloneContainerToECR', arguments: { repositoryName: 'term-held' } },
      undefined,
      { timeout: 30_000 },
    )) as CallToolResult;
    expect(text(retry)).toContain('cloned into term-held');
    expect(await ran('CloneContainerToECR', 'repositoryName', 'term-held')).toBe(1);
    expect(await ran('sleep', 'ms', 1500)).toBe(1);
  }, 90_000);

  it('SIGTERM while calls are still arriving and parking: every request is answered "pending", the process exits in time', async () => {
    const since = Date.now();
    const a = await gateway();
    const agent = await agentOf(a, BURST_TOKEN);
    const answers = callBurst(agent, 'burst', 150);
    // SIGTERM once the first few are parked: the others are still on their way through the gateway.
    await until(async () => ((await requested(since)) >= 5 ? true : undefined), 15_000, 'calls to park');
    const stopping = Date.now();
    const exited = stop(a, 'SIGTERM');
    const texts = await Promise.all(answers);
    expect(await exited).toBe(0);
    // Within the grace period (8 s), not at the end of some hold time.
    expect(Date.now() - stopping).toBeLessThan(8000);
    const pendingIds = texts.map((t) => /Approval pending \(id (\w+)\)/.exec(t)?.[1]);
    expect(texts.filter((_, i) => !pendingIds[i])).toEqual([]);
    expect(a.log()).not.toContain('audit write failed');
    // Every approval has its request event.
    const events = await auditEvents({ tool: 'ListClusters', limit: 10_000 });
    const requestedIds = events.filter((e) => e.reason === 'approval_requested').map((e) => e.approvalId);
    expect(new Set(requestedIds)).toEqual(new Set(pendingIds));
    expect(await ran('ListClusters', 'id', 'burst-0')).toBe(0);
  }, 90_000);

  it('SIGTERM just after a client holding many calls went away: the process exits in time, the calls stay parked, and nothing is audited as decided', async () => {
    const since = Date.now();
    const a = await gateway();
    const agent = await agentOf(a, BURST_TOKEN);
    const held = callBurst(agent, 'gone', 150);
    await until(async () => ((await requested(since)) >= 50 ? true : undefined), 15_000, 'calls to park');
    // The client goes away with most calls parked and the rest on their way; the gateway is stopped at once.
    await agent.close();
    await Promise.all(held);
    const stopping = Date.now();
    const exited = stop(a, 'SIGTERM');
    expect(await exited).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(8000);
    expect(a.log()).not.toContain('audit write failed');
    // Nothing was decided: the calls stay parked (for the agent's retry), and the trail says just that.
    const events = (await auditEvents({ tool: 'ListClusters', limit: 10_000 })).filter(
      (e) => Date.parse(e.time) >= since,
    );
    expect(events.length).toBeGreaterThanOrEqual(50);
    expect(events.filter((e) => e.reason !== 'approval_requested')).toEqual([]);
    const redis = await connectTestRedis();
    const pending = new Set(await redis.zrange(`${prefix}approvals:pending`, '0', '-1'));
    redis.disconnect();
    expect(events.filter((e) => !pending.has(e.approvalId ?? ''))).toEqual([]);
  }, 90_000);

  it('an approval that expires while no gateway runs is expired by the next one at start', async () => {
    const a = await gateway();
    const agentA = await agentOf(a);
    const task = await asTask(agentA, 'DeleteCluster', { id: 'while-down' });
    const id = await postedApprovalId(slack, 'while-down', 15_000);
    // Killed once the message's id is recorded (so the next process can redraw it).
    await until(
      async () => ((await api(a.url, `/approvals/${id}`)).json.slackTs ? true : undefined),
      10_000,
      'the Slack message to be recorded',
    );
    await stop(a, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 4000)); // past its 3 s timeout, with no process running

    const b = await gateway();
    await slack.waitFor(
      'chat.update',
      (c) => {
        const blocks = JSON.stringify(c.body.blocks ?? '');
        return blocks.includes('*Expired*') && blocks.includes('while-down');
      },
      10_000,
    );
    const agentB = await agentOf(b);
    const result = (await agentB.experimental.tasks.getTaskResult(task.task.taskId, CallToolResultSchema, {
      timeout: 10_000,
    })) as CallToolResult;
    expect(text(result)).toContain('No decision within 3s; not executed');
    // A late click changes nothing.
    await postInteraction(b.url, SIGNING_SECRET, clickPayload('countersign_approve', id, ALICE));
    expect((await api(b.url, `/approvals/${id}`)).json).toMatchObject({ status: 'expired' });
    expect(await ran('DeleteCluster', 'id', 'while-down')).toBe(0);
  }, 60_000);
});
