/**
 * Redis killed (SIGKILL) and restarted from its append-only file while calls are parked for approval, under a
 * real `countersign serve` child process: nothing parked, no task and no audit event is lost; while Redis is
 * down every new call is refused (fail closed); once it is back, the parked calls resume.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Redis } from 'ioredis';
import { AuditLog } from '../../src/audit/log.js';
import { startEmbeddedRedis } from '../../src/redis/embedded.js';
import type { EmbeddedRedis } from '../../src/redis/embedded.js';
import { startServe, writeServeFiles } from '../support/cli.js';
import type { ServeProcess } from '../support/cli.js';
import { clickPayload, postInteraction, startFakeSlack } from '../support/fake-slack.js';
import type { FakeSlack } from '../support/fake-slack.js';
import { connectClient, toyServer } from '../support/gateway.js';
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

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold', timeout: '5m' },
    },
    DescribeCluster: { action: 'allow' },
  },
};
const PREFIX = 'cs:';

describe('Redis restarted with calls parked (append-only file on)', () => {
  let dir: string;
  let log: string;
  let slack: FakeSlack;
  let redis: EmbeddedRedis;
  let port: number;
  let gateway: ServeProcess;
  let agent: Client;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-redis-restart-'));
    log = path.join(dir, 'calls.jsonl');
    slack = await startFakeSlack();
    redis = await startEmbeddedRedis({ dir: path.join(dir, 'redis'), reuse: false });
    port = Number(new URL(redis.url).port);
    const configFile = await writeServeFiles(
      dir,
      {
        listen: { port: 0 },
        redis: { url: redis.url, prefix: PREFIX },
        servers: { aws: toyServer('p.json', { env: { TOY_CALL_LOG: log } }) },
        grants: [{ id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) }],
        approvals: { poll_ms: 200, liveness_ms: 2000, task_poll_interval_ms: 100 },
        data_dir: path.join(dir, 'state'),
      },
      { 'p.json': POLICY },
    );
    gateway = await startServe(configFile, {
      cwd: dir,
      env: { LOG_LEVEL: 'warn', ...slackEnv(slack.apiUrl) },
    });
    agent = await connectClient(`${gateway.url}/mcp`, { token: AGENT_TOKEN });
  }, 60_000);

  afterAll(async () => {
    await agent?.close().catch(() => undefined);
    if (gateway?.child.exitCode === null) gateway.child.kill('SIGKILL');
    await redis?.stop();
    await slack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function withRedis<T>(work: (client: Redis) => Promise<T>): Promise<T> {
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    try {
      return await work(client);
    } finally {
      client.disconnect();
    }
  }

  it('loses no approval, task or audit event, refuses new calls while down, and resumes parked calls after', async () => {
    const task = await agent.request(
      {
        method: 'tools/call',
        params: { name: 'CloneContainerToECR', arguments: { repositoryName: 'outage-task' }, task: {} },
      },
      CreateTaskResultSchema,
    );
    const held = agent
      .callTool({ name: 'CloneContainerToECR', arguments: { repositoryName: 'outage-held' } }, undefined, {
        timeout: 120_000,
      })
      .then(
        (r) => r as CallToolResult,
        (error: Error) => error,
      );
    const ids: string[] = [];
    for (const marker of ['outage-task', 'outage-held']) {
      const id = await postedApprovalId(slack, marker, 10_000);
      await until(
        async () => ((await api(gateway.url, `/approvals/${id}`)).json.slackTs ? true : undefined),
        10_000,
        'the Slack message to be recorded',
      );
      ids.push(id);
    }
    const before = await withRedis((c) => new AuditLog({ redis: c, prefix: PREFIX }).query({}));
    expect(before.filter((e) => e.reason === 'approval_requested')).toHaveLength(2);

    // The append-only file is fsynced every second: let it catch up, then kill Redis without warning.
    await new Promise((r) => setTimeout(r, 1500));
    const pid = await withRedis(async (c) => Number(/process_id:(\d+)/.exec(await c.info('server'))?.[1]));
    process.kill(pid, 'SIGKILL');
    await until(async () => {
      try {
        process.kill(pid, 0);
        return undefined;
      } catch {
        return true;
      }
    }, 5000);

    // While Redis is down: nothing new is allowed, and nothing runs.
    const refused = (await agent.callTool({
      name: 'DescribeCluster',
      arguments: { id: 'outage' },
    })) as CallToolResult;
    expect(refused.isError).toBe(true);
    expect(['store_unavailable', 'audit_unavailable']).toContain(
      (refused._meta?.['countersign/decision'] as { reason?: string } | undefined)?.reason,
    );
    const parkedWhileDown = (await agent.callTool({
      name: 'CloneContainerToECR',
      arguments: { repositoryName: 'outage-new' },
    })) as CallToolResult;
    expect(parkedWhileDown.isError).toBe(true);
    expect((await fetch(`${gateway.url}/readyz`)).status).toBe(503);

    redis = await startEmbeddedRedis({ dir: path.join(dir, 'redis'), reuse: false, port });
    await until(
      async () => ((await fetch(`${gateway.url}/readyz`)).status === 200 ? true : undefined),
      15_000,
    );

    // Everything written before the kill is still there, and the chain verifies (refusals made while Redis was
    // down were spooled and appended after it).
    const after = await withRedis((c) => new AuditLog({ redis: c, prefix: PREFIX }).query({}));
    const afterIds = new Set(after.map((e) => e.id));
    expect(before.every((e) => afterIds.has(e.id))).toBe(true);
    await until(
      async () => {
        const events = await withRedis((c) => new AuditLog({ redis: c, prefix: PREFIX }).query({}));
        return events.some(
          (e) => e.tool === 'DescribeCluster' && e.args === undefined && e.decision === 'deny',
        )
          ? true
          : undefined;
      },
      15_000,
      'the spooled refusal',
    );
    const verified = await withRedis((c) => new AuditLog({ redis: c, prefix: PREFIX }).verify());
    expect(verified.ok).toBe(true);
    for (const id of ids)
      expect((await api(gateway.url, `/approvals/${id}`)).json).toMatchObject({ status: 'pending' });
    expect((await agent.experimental.tasks.getTask(task.task.taskId)).status).toBe('working');

    // The parked calls resume: the held request (held through the outage) and the task get their results.
    for (const id of ids) {
      const res = await postInteraction(
        gateway.url,
        SIGNING_SECRET,
        clickPayload('countersign_approve', id, ALICE),
      );
      expect(res.status).toBe(200);
    }
    const heldAnswer = await held;
    if (heldAnswer instanceof Error) throw heldAnswer;
    expect(text(heldAnswer)).toContain('cloned into outage-held');
    const result = (await agent.experimental.tasks.getTaskResult(task.task.taskId, CallToolResultSchema, {
      timeout: 30_000,
    })) as CallToolResult;
    expect(text(result)).toContain('cloned into outage-task');
    const ran = await executions(log);
    expect(ran.filter((e) => e.args.repositoryName === 'outage-task')).toHaveLength(1);
    expect(ran.filter((e) => e.args.repositoryName === 'outage-held')).toHaveLength(1);
    expect(ran.filter((e) => e.args.repositoryName === 'outage-new' || e.args.id === 'outage')).toHaveLength(
      0,
    );
    expect(await readFile(path.join(dir, 'redis', 'redis.log'), 'utf8')).toMatch(/append only file|AOF/i);
  }, 120_000);
});
