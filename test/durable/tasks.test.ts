/**
 * MCP tasks for calls a person must approve, against a real `countersign serve` child process, real Redis,
 * the fake Slack API and the SDK client's task API.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult, CreateTaskResult } from '@modelcontextprotocol/sdk/types.js';
import { startServe, writeServeFiles } from '../support/cli.js';
import type { ServeProcess } from '../support/cli.js';
import { clickPayload, postInteraction, rejectSubmission, startFakeSlack } from '../support/fake-slack.js';
import type { FakeSlack } from '../support/fake-slack.js';
import { connectClient, everythingServer, toyServer } from '../support/gateway.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from '../support/redis.js';
import {
  AGENT_TOKEN,
  ALICE,
  BOB,
  CHANNEL,
  SIGNING_SECRET,
  api,
  postedApprovalId,
  executions,
  sha,
  slackEnv,
  text,
} from '../support/approvals.js';

const OTHER_TOKEN = 'other-token-0123456789';
const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      deny_if: [{ path: 'args.repositoryName', op: 'eq', value: 'forbidden' }],
      approval: { channel: CHANNEL, reviewers: [ALICE.id, BOB.id], wait: 'hold', timeout: '5m' },
    },
    DescribeCluster: { action: 'allow' },
    ListClusters: { action: 'allow' },
  },
};
const EVERYTHING_POLICY = {
  version: '1',
  default: 'deny',
  tools: { echo: { action: 'allow' }, 'simulate-research-query': { action: 'allow' } },
};

describe('MCP tasks for approval-gated calls (serve child process)', () => {
  let dir: string;
  let log: string;
  let slack: FakeSlack;
  let gateway: ServeProcess;
  let agent: Client;
  const prefix = uniquePrefix('tasks');

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-tasks-'));
    log = path.join(dir, 'calls.jsonl');
    slack = await startFakeSlack();
    const configFile = await writeServeFiles(
      dir,
      {
        listen: { port: 0 },
        redis: { url: testRedisUrl(), prefix },
        servers: {
          aws: toyServer('p.json', { env: { TOY_CALL_LOG: log } }),
          everything: everythingServer('e.json'),
        },
        grants: [
          { id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) },
          { id: 'other-bot', owner: 'otto@example.com', token_sha256: sha(OTHER_TOKEN) },
        ],
        approvals: { poll_ms: 200, task_poll_interval_ms: 100 },
      },
      { 'p.json': POLICY, 'e.json': EVERYTHING_POLICY },
    );
    gateway = await startServe(configFile, {
      cwd: dir,
      env: { LOG_LEVEL: 'warn', ...slackEnv(slack.apiUrl) },
    });
    agent = await connectClient(`${gateway.url}/mcp/aws`, { token: AGENT_TOKEN });
  }, 60_000);

  afterAll(async () => {
    await agent?.close();
    if (gateway?.child.exitCode === null) gateway.child.kill('SIGKILL');
    const redis = await connectTestRedis();
    await dropPrefix(redis, prefix);
    redis.disconnect();
    await slack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function callAsTask(
    name: string,
    args: Record<string, unknown>,
    ttl?: number,
  ): Promise<CreateTaskResult> {
    return agent.request(
      { method: 'tools/call', params: { name, arguments: args, task: ttl ? { ttl } : {} } },
      CreateTaskResultSchema,
    );
  }

  it('declares tasks, and lists a tool a person must approve as task-capable with a note', async () => {
    expect(agent.getServerCapabilities()?.tasks).toEqual({
      list: {},
      cancel: {},
      requests: { tools: { call: {} } },
    });
    const { tools } = await agent.listTools();
    const clone = tools.find((t) => t.name === 'CloneContainerToECR');
    expect(clone?.execution?.taskSupport).toBe('optional');
    expect(clone?.description).toContain('A person may have to approve calls to this tool');
    const describe = tools.find((t) => t.name === 'DescribeCluster');
    expect(describe?.execution?.taskSupport ?? 'forbidden').toBe('forbidden');
    expect(describe?.description).not.toContain('Countersign');
  });

  it('a task-capable client gets a task at once, polls it, and after the approval gets the upstream result', async () => {
    const started = Date.now();
    const created = await callAsTask('CloneContainerToECR', { repositoryName: 'task-approved' }, 7_200_000);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(created.task.status).toBe('working');
    expect(created.task.pollInterval).toBe(100);
    expect(created.task.ttl).toBe(7_200_000);
    const id = await postedApprovalId(slack, 'task-approved', 10_000);
    expect(created.task.statusMessage).toContain(`approval ${id}`);
    expect(created.task.statusMessage).toContain(`Slack channel ${CHANNEL}`);
    expect(created._meta?.['io.modelcontextprotocol/model-immediate-response']).toContain('has not run');

    const polled = await agent.experimental.tasks.getTask(created.task.taskId);
    expect(polled.status).toBe('working');
    expect(polled.statusMessage).toContain('Waiting for a person');
    expect((await executions(log)).filter((e) => e.args.repositoryName === 'task-approved')).toHaveLength(0);

    // tasks/result blocks until the task is terminal.
    const result = agent.experimental.tasks.getTaskResult(created.task.taskId, CallToolResultSchema, {
      timeout: 30_000,
    });
    const res = await postInteraction(
      gateway.url,
      SIGNING_SECRET,
      clickPayload('countersign_approve', id, ALICE),
    );
    expect(res.status).toBe(200);
    const final = (await result) as CallToolResult;
    expect(text(final)).toContain('cloned into task-approved');
    expect(final._meta?.['io.modelcontextprotocol/related-task']).toEqual({ taskId: created.task.taskId });

    const done = await agent.experimental.tasks.getTask(created.task.taskId);
    expect(done.status).toBe('completed');
    expect(done.statusMessage).toContain('Approved by alice');
    // Repeatable, and the call ran once.
    const again = (await agent.experimental.tasks.getTaskResult(
      created.task.taskId,
      CallToolResultSchema,
    )) as CallToolResult;
    expect(text(again)).toBe(text(final));
    expect((await executions(log)).filter((e) => e.args.repositoryName === 'task-approved')).toHaveLength(1);
    await slack.waitFor(
      'chat.postMessage',
      (c) => c.body.thread_ts !== undefined && JSON.stringify(c.body).includes('Executed'),
    );

    // The result belongs to the agent: the approvals API does not show it.
    expect(JSON.stringify((await api(gateway.url, `/approvals/${id}`)).json)).not.toContain('cloned into');
    // The task consumed the approval: the identical call asks a person again (a new approval).
    const again2 = await callAsTask('CloneContainerToECR', { repositoryName: 'task-approved' });
    expect(again2.task.status).toBe('working');
    expect(again2.task.statusMessage).not.toContain(id);
    await agent.experimental.tasks.cancelTask(again2.task.taskId);

    // Listed for its grant, invisible to another grant.
    const listed = await agent.experimental.tasks.listTasks();
    expect(listed.tasks.map((t) => t.taskId)).toContain(created.task.taskId);
    const other = await connectClient(`${gateway.url}/mcp/aws`, { token: OTHER_TOKEN });
    try {
      await expect(other.experimental.tasks.getTask(created.task.taskId)).rejects.toThrow(/Task not found/);
      await expect(other.experimental.tasks.cancelTask(created.task.taskId)).rejects.toThrow(
        /Task not found/,
      );
      expect((await other.experimental.tasks.listTasks()).tasks).toHaveLength(0);
    } finally {
      await other.close();
    }
  });

  it('a task for an approved call nobody is running yet (its session ended) gets a task at once, and the result', async () => {
    const other = await connectClient(`${gateway.url}/mcp/aws`, { token: AGENT_TOKEN });
    const held = other
      .callTool({ name: 'CloneContainerToECR', arguments: { repositoryName: 'task-late' } }, undefined, {
        timeout: 60_000,
      })
      .catch((error: Error) => error);
    const id = await postedApprovalId(slack, 'task-late', 10_000);
    // The session ends, so nobody is left to run the call once approved.
    await (other.transport as StreamableHTTPClientTransport).terminateSession();
    await other.close();
    await held;
    await new Promise((r) => setTimeout(r, 300));
    await postInteraction(gateway.url, SIGNING_SECRET, clickPayload('countersign_approve', id, ALICE));
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    const created = await callAsTask('CloneContainerToECR', { repositoryName: 'task-late' });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(created.task.statusMessage).toContain(id);
    const result = (await agent.experimental.tasks.getTaskResult(created.task.taskId, CallToolResultSchema, {
      timeout: 30_000,
    })) as CallToolResult;
    expect(text(result)).toContain('cloned into task-late');
    expect((await executions(log)).filter((e) => e.args.repositoryName === 'task-late')).toHaveLength(1);
  });

  it('a rejection gives a failed task whose result carries the reason; nothing runs', async () => {
    // A ttl shorter than the approval's timeout is raised: the task outlives the approval's expiry by 10 min.
    const created = await callAsTask('CloneContainerToECR', { repositoryName: 'task-rejected' }, 1000);
    expect(created.task.ttl).toBeGreaterThan(15 * 60_000 - 5000);
    const id = await postedApprovalId(slack, 'task-rejected', 10_000);
    await postInteraction(gateway.url, SIGNING_SECRET, rejectSubmission(id, BOB, 'not during the freeze'));
    const result = (await agent.experimental.tasks.getTaskResult(created.task.taskId, CallToolResultSchema, {
      timeout: 30_000,
    })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(text(result)).toContain('Rejected by bob: not during the freeze');
    const task = await agent.experimental.tasks.getTask(created.task.taskId);
    expect(task.status).toBe('failed');
    expect(task.statusMessage).toBe('Rejected by bob: not during the freeze');
    expect((await executions(log)).filter((e) => e.args.repositoryName === 'task-rejected')).toHaveLength(0);
  });

  it('tasks/cancel cancels the approval, updates the Slack message, and a later click changes nothing', async () => {
    const created = await callAsTask('CloneContainerToECR', { repositoryName: 'task-cancelled' });
    const id = await postedApprovalId(slack, 'task-cancelled', 10_000);
    const cancelled = await agent.experimental.tasks.cancelTask(created.task.taskId);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.statusMessage).toContain('not executed');
    await slack.waitFor('chat.update', (c) =>
      JSON.stringify(c.body.blocks).includes('*Cancelled*: cancelled by the agent (tasks/cancel)'),
    );
    await expect(agent.experimental.tasks.cancelTask(created.task.taskId)).rejects.toThrow(
      /Cannot cancel task in terminal status: cancelled/,
    );
    await postInteraction(gateway.url, SIGNING_SECRET, clickPayload('countersign_approve', id, ALICE));
    await new Promise((r) => setTimeout(r, 500));
    expect((await agent.experimental.tasks.getTask(created.task.taskId)).status).toBe('cancelled');
    expect((await executions(log)).filter((e) => e.args.repositoryName === 'task-cancelled')).toHaveLength(0);
  });

  it('a task-augmented call that needs no approval gets a settled task; a tool without task support gets -32601', async () => {
    // DescribeCluster is allowed and takes no tasks: asking for one is refused, as the spec says.
    await expect(callAsTask('DescribeCluster', { id: 'x' })).rejects.toThrow(
      /does not support task-augmented calls/,
    );
    // A call the policy refuses at once, asked as a task on a task-capable tool: a failed task, nobody asked.
    const slackPosts = slack.callsOf('chat.postMessage').length;
    const refused = await callAsTask('CloneContainerToECR', { repositoryName: 'forbidden' });
    expect(refused.task.status).toBe('failed');
    expect(refused.task.statusMessage).toContain('deny_if');
    const result = (await agent.experimental.tasks.getTaskResult(
      refused.task.taskId,
      CallToolResultSchema,
    )) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(result._meta?.['countersign/decision']).toMatchObject({ reason: 'deny_if' });
    expect(slack.callsOf('chat.postMessage').length).toBe(slackPosts);
  });

  it('an unknown task id, or a malformed one, is "not found" and changes nothing', async () => {
    await expect(agent.experimental.tasks.getTask('00000000-0000-4000-8000-000000000000')).rejects.toThrow(
      /Task not found/,
    );
    await expect(agent.experimental.tasks.getTask('../../etc/passwd')).rejects.toThrow(/Task not found/);
    await expect(agent.experimental.tasks.listTasks('bogus-cursor')).rejects.toThrow(/Invalid cursor/);
  });

  it('proxies an upstream server that runs a tool as a task (server-everything simulate-research-query)', async () => {
    const everything = await connectClient(`${gateway.url}/mcp/everything`, { token: AGENT_TOKEN });
    try {
      const { tools } = await everything.listTools();
      expect(tools.find((t) => t.name === 'simulate-research-query')?.execution?.taskSupport).toBe(
        'required',
      );
      const messages = [];
      for await (const message of everything.experimental.tasks.callToolStream(
        { name: 'simulate-research-query', arguments: { topic: 'gateways' } },
        CallToolResultSchema,
        { task: { ttl: 60_000 }, timeout: 60_000 },
      )) {
        messages.push(message);
      }
      const created = messages.find((m) => m.type === 'taskCreated');
      const last = messages.at(-1);
      expect(created).toBeDefined();
      expect(last?.type).toBe('result');
      if (last?.type === 'result') expect(JSON.stringify(last.result)).toContain('gateways');
      const taskId = created?.type === 'taskCreated' ? created.task.taskId : '';
      // The gateway's own id, bound to the grant.
      expect(taskId).toMatch(/^[0-9a-f-]{36}$/);
      const other = await connectClient(`${gateway.url}/mcp/everything`, { token: OTHER_TOKEN });
      try {
        await expect(other.experimental.tasks.getTask(taskId)).rejects.toThrow(/Task not found/);
      } finally {
        await other.close();
      }
    } finally {
      await everything.close();
    }
  }, 90_000);
});
