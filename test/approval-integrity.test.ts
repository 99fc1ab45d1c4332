/**
 * Approval integrity, tried as an agent with a grant would: the policy in force when an approved call runs is
 * the one that decides (held request, `wait: return` retry and task alike), and an approved call's result is
 * handed out to exactly one request, however many identical retries race for it. Real gateway, real Redis, the
 * SDK's client, and a toy upstream that logs every execution.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway, toyServer, writePolicies } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { AuditLog } from '../src/audit/log.js';
import type { AuditEvent } from '../src/audit/event.js';
import { connectTestRedis } from './support/redis.js';
import { ADMIN_TOKEN, AGENT_TOKEN, api, executions, sha, text, until } from './support/approvals.js';

const reviewers = ['alice', 'bob'];
function policy(changes: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: '1',
    default: 'deny',
    tools: {
      // Held: the request waits for the person.
      DeleteCluster: {
        action: 'require_approval',
        approval: { reviewers, wait: 'hold', timeout: '5m', max_pending: 50 },
      },
      // Returned: the request answers "pending" at once; the agent's identical retry picks up the outcome.
      DescribeCluster: {
        action: 'require_approval',
        approval: { reviewers, wait: 'return', timeout: '5m', max_pending: 50 },
      },
      CloneContainerToECR: {
        action: 'require_approval',
        approval: { reviewers, wait: 'hold', timeout: '5m', max_pending: 50 },
      },
      // Paced: one call per 4 s window, so an approved call can wait for its window.
      ListClusters: {
        action: 'require_approval',
        limits: [{ counter: 'list', window: 4, max: 1, scope: 'grant' }],
        approval: { reviewers, wait: 'hold', timeout: '5m', max_pending: 50 },
      },
      ...changes,
    },
  };
}

const decisionOf = (result: CallToolResult): { reason?: string } =>
  (result._meta?.['countersign/decision'] as { reason?: string } | undefined) ?? {};
const approvalOf = (result: CallToolResult): string =>
  String((result._meta?.['countersign/approval'] as { id?: string } | undefined)?.id);

describe('approval integrity: the policy in force decides, and a result is handed out once', () => {
  let gateway: TestGateway;
  let dir: string;
  let log: string;
  const agents: Client[] = [];

  const agent = async (): Promise<Client> => {
    const client = await connectClient(`${gateway.url}/mcp`, { token: AGENT_TOKEN });
    agents.push(client);
    return client;
  };
  const ran = async (tool: string, id: string): Promise<number> =>
    (await executions(log)).filter((e) => e.tool === tool && e.args.id === id).length;
  const reload = async (doc: Record<string, unknown>): Promise<void> => {
    await writePolicies(gateway.dir, { 'aws.json': doc });
    await gateway.reload();
  };
  const pendingFor = (tool: string, marker: string): Promise<string> =>
    until(
      async () => {
        const listed = await api(gateway.url, '/approvals?status=pending&limit=200');
        const approvals = listed.json.approvals as { id: string; tool: string; args: { id?: string } }[];
        return approvals.find((a) => a.tool === tool && a.args.id === marker)?.id;
      },
      10_000,
      `a pending approval of ${tool} ${marker}`,
    );
  const approve = async (id: string, reviewer = 'alice'): Promise<void> => {
    const answer = await api(gateway.url, `/approvals/${id}/approve`, { method: 'POST', body: { reviewer } });
    expect(answer.status, JSON.stringify(answer.json)).toBe(200);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-integrity-'));
    log = path.join(dir, 'calls.jsonl');
    gateway = await startTestGateway({
      policies: { 'aws.json': policy() },
      config: {
        servers: { aws: toyServer('aws.json', { env: { TOY_CALL_LOG: log } }) },
        grants: [{ id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) }],
        approvals: { poll_ms: 200, task_poll_interval_ms: 100 },
      },
      env: { COUNTERSIGN_ADMIN_TOKEN: ADMIN_TOKEN },
    });
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close().catch(() => undefined)));
    await gateway?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('positive control: a held call approved under an unchanged policy runs once and gets its result', async () => {
    const client = await agent();
    const held = client.callTool({
      name: 'DeleteCluster',
      arguments: { id: 'control' },
    }) as Promise<CallToolResult>;
    await approve(await pendingFor('DeleteCluster', 'control'));
    const result = await held;
    expect(result.isError).toBeFalsy();
    expect(text(result)).toContain('"id":"control"');
    expect(await ran('DeleteCluster', 'control')).toBe(1);
  });

  it('a held call approved after a reload that denies its tool does not run, and says why', async () => {
    const client = await agent();
    const held = client.callTool({
      name: 'DeleteCluster',
      arguments: { id: 'held-denied' },
    }) as Promise<CallToolResult>;
    const id = await pendingFor('DeleteCluster', 'held-denied');
    await reload(policy({ DeleteCluster: { action: 'deny', reason: 'frozen for the audit' } }));
    try {
      await approve(id);
      const result = await held;
      expect(result.isError).toBe(true);
      expect(decisionOf(result).reason).toBe('policy_changed');
      expect(text(result)).toMatch(
        /policy in force now denies this call .*frozen for the audit.*was not run/,
      );
      await new Promise((r) => setTimeout(r, 300));
      expect(await ran('DeleteCluster', 'held-denied')).toBe(0);
      // Audited as the call's decision, with the approval it used up.
      const trail = await gatewayTrail(gateway, id);
      expect(trail).toContainEqual(
        expect.objectContaining({ type: 'decision', decision: 'deny', reason: 'policy_changed' }),
      );
      expect(trail.some((e) => e.type === 'decision' && e.decision === 'allow')).toBe(false);
    } finally {
      await reload(policy());
    }
  });

  it('a held call approved after a reload whose deny_if now matches its arguments does not run', async () => {
    const client = await agent();
    const held = client.callTool({
      name: 'DeleteCluster',
      arguments: { id: 'prod-1' },
    }) as Promise<CallToolResult>;
    const id = await pendingFor('DeleteCluster', 'prod-1');
    await reload(
      policy({
        DeleteCluster: {
          action: 'require_approval',
          deny_if: [{ path: 'args.id', op: 'regex', value: '^prod-' }],
          approval: { reviewers, wait: 'hold', timeout: '5m', max_pending: 50 },
        },
      }),
    );
    try {
      await approve(id);
      const result = await held;
      expect(decisionOf(result).reason).toBe('policy_changed');
      expect(await ran('DeleteCluster', 'prod-1')).toBe(0);
    } finally {
      await reload(policy());
    }
  });

  it("a returned call approved by a reviewer the reload removed does not run on the agent's retry", async () => {
    const first = await agent();
    const pending = (await first.callTool({
      name: 'DescribeCluster',
      arguments: { id: 'returned' },
    })) as CallToolResult;
    expect(text(pending)).toContain('Approval pending');
    const id = approvalOf(pending);
    // The session ends: nothing in the gateway runs the call until the agent's retry asks for it.
    await endSession(first);
    await approve(id, 'alice');
    await reload(
      policy({
        DescribeCluster: {
          action: 'require_approval',
          approval: { reviewers: ['bob'], wait: 'return', timeout: '5m', max_pending: 50 },
        },
      }),
    );
    try {
      const retry = (await (
        await agent()
      ).callTool({ name: 'DescribeCluster', arguments: { id: 'returned' } })) as CallToolResult;
      expect(retry.isError).toBe(true);
      expect(decisionOf(retry).reason).toBe('reviewers_changed');
      expect(text(retry)).toContain('no longer lists "alice"');
      expect(await ran('DescribeCluster', 'returned')).toBe(0);
      // The next identical retry is told the approval was used up, and truthfully why: nothing ran.
      const again = (await (
        await agent()
      ).callTool({ name: 'DescribeCluster', arguments: { id: 'returned' } })) as CallToolResult;
      expect(decisionOf(again).reason).toBe('approval_used');
      expect(text(again)).toContain('was refused before it ran');
    } finally {
      await reload(policy());
    }
  });

  it('a reviewer a reload removed can no longer decide; one still listed can, and the call runs', async () => {
    const client = await agent();
    const held = client.callTool({
      name: 'DeleteCluster',
      arguments: { id: 'reviewer-removed' },
    }) as Promise<CallToolResult>;
    const id = await pendingFor('DeleteCluster', 'reviewer-removed');
    await reload(
      policy({
        DeleteCluster: {
          action: 'require_approval',
          approval: { reviewers: ['bob'], wait: 'hold', timeout: '5m', max_pending: 50 },
        },
      }),
    );
    try {
      const removed = await api(gateway.url, `/approvals/${id}/approve`, {
        method: 'POST',
        body: { reviewer: 'alice' },
      });
      expect(removed.status).toBe(403);
      expect(removed.json.code).toBe('not_reviewer');
      expect((await api(gateway.url, `/approvals/${id}`)).json.status).toBe('pending');
      // Bob is listed before and after: his approval stands, and alice never took part.
      await approve(id, 'bob');
      const result = await held;
      expect(result.isError).toBeFalsy();
      expect(await ran('DeleteCluster', 'reviewer-removed')).toBe(1);
    } finally {
      await reload(policy());
    }
  });

  it('a tasked call approved after a reload that denies it does not run; the task fails with the reason', async () => {
    const client = await agent();
    const created = await client.request(
      {
        method: 'tools/call',
        params: { name: 'CloneContainerToECR', arguments: { id: 'tasked' }, task: {} },
      },
      CreateTaskResultSchema,
    );
    const id = await pendingFor('CloneContainerToECR', 'tasked');
    await reload(policy({ CloneContainerToECR: { action: 'deny' } }));
    try {
      await approve(id);
      const result = (await client.experimental.tasks.getTaskResult(
        created.task.taskId,
        CallToolResultSchema,
      )) as CallToolResult;
      expect(result.isError).toBe(true);
      expect(decisionOf(result).reason).toBe('policy_changed');
      expect((await client.experimental.tasks.getTask(created.task.taskId)).status).toBe('failed');
      expect(await ran('CloneContainerToECR', 'tasked')).toBe(0);
    } finally {
      await reload(policy());
    }
  });

  it('an approved call waiting for its rate window is refused by a reload that lands during the wait', async () => {
    const client = await agent();
    // Start early in a 4 s window (windows are aligned to UTC), so that the second call must wait for the next.
    await new Promise((r) => setTimeout(r, 4000 - (Date.now() % 4000) + 50));
    // Both parked while the window is free (a call over its limit is refused before anyone is asked).
    const first = client.callTool({ name: 'ListClusters', arguments: { id: 'window-1' } });
    const second = client.callTool({
      name: 'ListClusters',
      arguments: { id: 'window-2' },
    }) as Promise<CallToolResult>;
    const firstId = await pendingFor('ListClusters', 'window-1');
    const secondId = await pendingFor('ListClusters', 'window-2');
    // The first fills the window; the second, approved next, waits for the next one (up to 4 s).
    await approve(firstId);
    expect(((await first) as CallToolResult).isError).toBeFalsy();
    await approve(secondId);
    await reload(policy({ ListClusters: { action: 'deny', reason: 'listing is off' } }));
    try {
      const result = await second;
      expect(decisionOf(result).reason).toBe('policy_changed');
      expect(await ran('ListClusters', 'window-2')).toBe(0);
    } finally {
      await reload(policy());
    }
  });

  it('12 concurrent identical retries after approval: the upstream runs once, one retry gets the result', async () => {
    const first = await agent();
    const pending = (await first.callTool({
      name: 'DescribeCluster',
      arguments: { id: 'raced' },
    })) as CallToolResult;
    const id = approvalOf(pending);
    await endSession(first);
    await approve(id);
    const clients = await Promise.all(Array.from({ length: 12 }, () => agent()));
    const answers = (await Promise.all(
      clients.map((c) => c.callTool({ name: 'DescribeCluster', arguments: { id: 'raced' } })),
    )) as CallToolResult[];
    const results = answers.filter((a) => !a.isError);
    expect(results).toHaveLength(1);
    expect(text(results[0] as CallToolResult)).toContain('"id":"raced"');
    const used = answers.filter((a) => decisionOf(a).reason === 'approval_used');
    expect(used).toHaveLength(11);
    expect(text(used[0] as CallToolResult)).toMatch(/already used.*delivered to another request.*audit/);
    expect(await ran('DescribeCluster', 'raced')).toBe(1);
  });

  it('12 identical requests holding for one approval: the upstream runs once, one of them gets the result', async () => {
    const clients = await Promise.all(Array.from({ length: 12 }, () => agent()));
    const held = clients.map(
      (c) => c.callTool({ name: 'DeleteCluster', arguments: { id: 'held-12' } }) as Promise<CallToolResult>,
    );
    const id = await pendingFor('DeleteCluster', 'held-12');
    // Every request is parked on the same approval (one call, one approval) before anyone decides.
    await new Promise((r) => setTimeout(r, 500));
    await approve(id);
    const answers = await Promise.all(held);
    expect(answers.filter((a) => !a.isError)).toHaveLength(1);
    expect(answers.filter((a) => decisionOf(a).reason === 'approval_used')).toHaveLength(11);
    expect(await ran('DeleteCluster', 'held-12')).toBe(1);
  });
});

/** Ends the client's session at the gateway (DELETE), not just its connection. */
async function endSession(client: Client): Promise<void> {
  await (client.transport as StreamableHTTPClientTransport).terminateSession();
  await client.close();
}

async function gatewayTrail(gateway: TestGateway, approvalId: string): Promise<AuditEvent[]> {
  const redis = await connectTestRedis();
  try {
    const events = await new AuditLog({ redis, prefix: gateway.prefix }).query({ limit: 10_000 });
    return events.filter((e) => e.approvalId === approvalId);
  } finally {
    redis.disconnect();
  }
}
