/**
 * A reload that revokes a grant applies at once, tried as the agent whose grant was revoked: its token is refused
 * on its open session and on a new one, and none of its parked calls runs — held, `wait: return` or tasked —
 * while another grant keeps working. A reload with a broken config changes nothing; one that changes a setting
 * that needs a restart keeps the running value and says so. Real gateway, real Redis, the SDK's client, and a toy
 * upstream that logs every execution.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CallToolResultSchema, CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway, toyServer, writePolicies } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { cliCommand, startServe, writeServeFiles } from './support/cli.js';
import { AuditLog } from '../src/audit/log.js';
import type { AuditEvent } from '../src/audit/event.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from './support/redis.js';
import { ADMIN_TOKEN, AGENT_TOKEN, api, executions, sha, text, until } from './support/approvals.js';

const OTHER_TOKEN = 'other-agent-token-0123456789';
/** The gateway's 401 answer, as the SDK's client reports it. */
const UNAUTHORIZED = /Unauthorized: a valid bearer token/;
const DEPLOY_BOT = { id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) };
const CI_BOT = { id: 'ci-bot', owner: 'carl@example.com', token_sha256: sha(OTHER_TOKEN) };
const reviewers = ['alice', 'bob'];

const policy = {
  version: '1',
  default: 'deny',
  tools: {
    ListClusters: {},
    DeleteCluster: {
      action: 'require_approval',
      approval: { reviewers, wait: 'hold', timeout: '5m', max_pending: 50 },
    },
    DescribeCluster: {
      action: 'require_approval',
      approval: { reviewers, wait: 'return', timeout: '5m', max_pending: 50 },
    },
    CloneContainerToECR: {
      action: 'require_approval',
      approval: { reviewers, wait: 'hold', timeout: '5m', max_pending: 50 },
    },
  },
};

const decisionOf = (result: CallToolResult): { reason?: string } =>
  (result._meta?.['countersign/decision'] as { reason?: string } | undefined) ?? {};
const approvalOf = (result: CallToolResult): string =>
  String((result._meta?.['countersign/approval'] as { id?: string } | undefined)?.id);

describe('a reload that revokes a grant applies at once', () => {
  let gateway: TestGateway;
  let dir: string;
  let log: string;
  const clients: Client[] = [];

  const connect = async (token: string): Promise<Client> => {
    const client = await connectClient(`${gateway.url}/mcp`, { token });
    clients.push(client);
    return client;
  };
  const configFile = (): string => path.join(gateway.dir, 'countersign.json');
  /** Rewrites the gateway's config file (as an operator would) and reloads it. */
  const reloadWith = async (change: (doc: Record<string, unknown>) => Record<string, unknown>) => {
    const doc = JSON.parse(await readFile(configFile(), 'utf8')) as Record<string, unknown>;
    await writeFile(configFile(), JSON.stringify(change(doc)));
    return gateway.reload();
  };
  const revoke = () => reloadWith((doc) => ({ ...doc, grants: [CI_BOT] }));
  const restore = () => reloadWith((doc) => ({ ...doc, grants: [DEPLOY_BOT, CI_BOT] }));
  const ran = async (tool: string, id: string): Promise<number> =>
    (await executions(log)).filter((e) => e.tool === tool && e.args.id === id).length;
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
  const approve = (id: string, reviewer = 'alice') =>
    api(gateway.url, `/approvals/${id}/approve`, { method: 'POST', body: { reviewer } });
  const trail = async (approvalId: string): Promise<AuditEvent[]> => {
    const redis = await connectTestRedis();
    try {
      const events = await new AuditLog({ redis, prefix: gateway.prefix }).query({ limit: 10_000 });
      return events.filter((e) => e.approvalId === approvalId);
    } finally {
      redis.disconnect();
    }
  };
  const list = (client: Client) =>
    client.callTool({ name: 'ListClusters', arguments: { id: 'list' } }) as Promise<CallToolResult>;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-grant-reload-'));
    log = path.join(dir, 'calls.jsonl');
    gateway = await startTestGateway({
      policies: { 'aws.json': policy },
      config: {
        servers: { aws: toyServer('aws.json', { env: { TOY_CALL_LOG: log } }) },
        grants: [DEPLOY_BOT, CI_BOT],
        approvals: { poll_ms: 200, task_poll_interval_ms: 100 },
      },
      env: { COUNTERSIGN_ADMIN_TOKEN: ADMIN_TOKEN },
    });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await gateway?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("the revoked grant's token gets 401 on its open session and on a new one; another grant keeps working", async () => {
    const revoked = await connect(AGENT_TOKEN);
    const other = await connect(OTHER_TOKEN);
    expect((await list(revoked)).isError).toBeFalsy();
    expect((await list(other)).isError).toBeFalsy();
    const before = await ran('ListClusters', 'list');

    const summary = await revoke();
    try {
      expect(summary.changes.revoked).toEqual(['deploy-bot']);
      expect(summary.grants).toEqual(['ci-bot']);
      expect(summary.restartNeeded).toEqual([]);
      await expect(list(revoked)).rejects.toThrow(UNAUTHORIZED);
      await expect(connect(AGENT_TOKEN)).rejects.toThrow(UNAUTHORIZED);
      // Positive control: the grant still in force is served, on its open session and on a new one.
      expect((await list(other)).isError).toBeFalsy();
      expect((await list(await connect(OTHER_TOKEN))).isError).toBeFalsy();
      expect(await ran('ListClusters', 'list')).toBe(before + 2);
    } finally {
      await restore();
    }
    // Given back by a reload, the token works again (on a new session: the old one ended).
    expect((await list(await connect(AGENT_TOKEN))).isError).toBeFalsy();
  });

  it("the revoked grant's open sessions end: a stream they hold open is closed", async () => {
    const headers = {
      authorization: `Bearer ${AGENT_TOKEN}`,
      accept: 'application/json, text/event-stream',
      'content-type': 'application/json',
    };
    const init = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-06-18',
          capabilities: {},
          clientInfo: { name: 'raw', version: '1' },
        },
      }),
    });
    expect(init.status).toBe(200);
    await init.text();
    const session = { ...headers, 'mcp-session-id': String(init.headers.get('mcp-session-id')) };
    await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers: session,
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    const stream = await fetch(`${gateway.url}/mcp`, { headers: session });
    expect(stream.status).toBe(200);
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    const ended = (async () => {
      for (;;) if ((await reader.read()).done) return true;
    })().catch(() => true);
    await revoke();
    try {
      const closed = await Promise.race([ended, new Promise((r) => setTimeout(() => r(false), 3000))]);
      expect(closed).toBe(true);
    } finally {
      await reader.cancel().catch(() => undefined);
      await restore();
    }
  });

  it('a held call approved after the reload that revoked its grant does not run: grant_revoked, audited', async () => {
    const client = await connect(AGENT_TOKEN);
    const held = client.callTool({
      name: 'DeleteCluster',
      arguments: { id: 'held-revoked' },
    }) as Promise<CallToolResult>;
    const id = await pendingFor('DeleteCluster', 'held-revoked');
    await revoke();
    try {
      expect((await approve(id)).status).toBe(200);
      const result = await held;
      expect(result.isError).toBe(true);
      expect(decisionOf(result).reason).toBe('grant_revoked');
      expect(text(result)).toContain('grant deploy-bot no longer exists');
      await new Promise((r) => setTimeout(r, 300));
      expect(await ran('DeleteCluster', 'held-revoked')).toBe(0);
      const events = await trail(id);
      expect(events).toContainEqual(
        expect.objectContaining({ type: 'decision', decision: 'deny', reason: 'grant_revoked' }),
      );
      expect(events.some((e) => e.type === 'decision' && e.decision === 'allow')).toBe(false);
      // Its session ended once the held call was answered.
      await expect(list(client)).rejects.toThrow(UNAUTHORIZED);
    } finally {
      await restore();
    }
  });

  it('a returned call approved after the reload never runs: its session ended, its retry gets 401', async () => {
    const client = await connect(AGENT_TOKEN);
    const pending = (await client.callTool({
      name: 'DescribeCluster',
      arguments: { id: 'returned-revoked' },
    })) as CallToolResult;
    expect(text(pending)).toContain('Approval pending');
    const id = approvalOf(pending);
    await revoke();
    try {
      expect((await approve(id)).status).toBe(200);
      await expect(
        client.callTool({ name: 'DescribeCluster', arguments: { id: 'returned-revoked' } }),
      ).rejects.toThrow(UNAUTHORIZED);
      // Nothing is left to run it: the session that parked it ended, and its retry is refused.
      await new Promise((r) => setTimeout(r, 1000));
      expect(await ran('DescribeCluster', 'returned-revoked')).toBe(0);
    } finally {
      await restore();
    }
  });

  it('a tasked call approved after the reload does not run, and its task fails with grant_revoked', async () => {
    const client = await connect(AGENT_TOKEN);
    const created = await client.request(
      {
        method: 'tools/call',
        params: { name: 'CloneContainerToECR', arguments: { id: 'tasked-revoked' }, task: {} },
      },
      CreateTaskResultSchema,
    );
    const id = await pendingFor('CloneContainerToECR', 'tasked-revoked');
    await revoke();
    try {
      expect((await approve(id)).status).toBe(200);
      // The background runner takes it up and refuses it.
      await until(
        async () =>
          (await api(gateway.url, `/approvals/${id}`)).json.outcome === 'refused' ? true : undefined,
        10_000,
        'the approved task to be refused',
      );
      expect(await ran('CloneContainerToECR', 'tasked-revoked')).toBe(0);
      expect(await trail(id)).toContainEqual(
        expect.objectContaining({ type: 'decision', decision: 'deny', reason: 'grant_revoked' }),
      );
    } finally {
      await restore();
    }
    // Even with the grant given back, the task stays failed and the call never runs.
    const again = await connect(AGENT_TOKEN);
    const result = (await again.experimental.tasks.getTaskResult(
      created.task.taskId,
      CallToolResultSchema,
    )) as CallToolResult;
    expect(decisionOf(result).reason).toBe('grant_revoked');
    expect((await again.experimental.tasks.getTask(created.task.taskId)).status).toBe('failed');
    expect(await ran('CloneContainerToECR', 'tasked-revoked')).toBe(0);
  });

  it("a grant's new owner is the owner: cannot approve its calls, and one parked before the change does not run", async () => {
    const client = await connect(AGENT_TOKEN);
    const parkedBefore = client.callTool({
      name: 'DeleteCluster',
      arguments: { id: 'owner-before' },
    }) as Promise<CallToolResult>;
    const before = await pendingFor('DeleteCluster', 'owner-before');
    const summary = await reloadWith((doc) => ({
      ...doc,
      grants: [{ ...DEPLOY_BOT, owner: 'alice' }, CI_BOT],
    }));
    try {
      expect(summary.changes.ownerChanged).toEqual(['deploy-bot']);
      // Parked on the same (open) session after the change: alice owns it now, so she may not approve it.
      const parkedAfter = client.callTool({
        name: 'DeleteCluster',
        arguments: { id: 'owner-after' },
      }) as Promise<CallToolResult>;
      const after = await pendingFor('DeleteCluster', 'owner-after');
      const selfApproval = await approve(after, 'alice');
      expect(selfApproval.status).toBe(403);
      expect(JSON.stringify(selfApproval.json)).toMatch(/own/i);
      expect((await approve(after, 'bob')).status).toBe(200);
      expect((await parkedAfter).isError).toBeFalsy();
      // Parked while olga owned the grant, approved by alice, who owns it now: not run.
      expect((await approve(before, 'alice')).status).toBe(200);
      const result = await parkedBefore;
      expect(decisionOf(result).reason).toBe('grant_changed');
      expect(await ran('DeleteCluster', 'owner-before')).toBe(0);
    } finally {
      await restore();
    }
  });

  it('a reload with a broken config file changes nothing: neither grants nor policies', async () => {
    const client = await connect(AGENT_TOKEN);
    const good = await readFile(configFile(), 'utf8');
    // The policy now hides ListClusters, and the config revokes deploy-bot but is not valid.
    await writePolicies(gateway.dir, { 'aws.json': { ...policy, hide: ['ListClusters'] } });
    await writeFile(
      configFile(),
      JSON.stringify({ ...JSON.parse(good), grants: [CI_BOT], listen: { port: 'x' } }),
    );
    try {
      await expect(gateway.reload()).rejects.toThrow(/invalid config .*\/listen\/port/s);
      expect((await list(client)).isError).toBeFalsy();
      expect((await list(await connect(AGENT_TOKEN))).isError).toBeFalsy();
    } finally {
      await writeFile(configFile(), good);
      await writePolicies(gateway.dir, { 'aws.json': policy });
      await gateway.reload();
    }
  });

  it('a reload that changes listen.port names it as needing a restart, keeps the port, and still takes the grants', async () => {
    const summary = await reloadWith((doc) => ({
      ...doc,
      listen: { host: '127.0.0.1', port: 1 },
      grants: [CI_BOT],
    }));
    try {
      expect(summary.restartNeeded).toEqual(['listen']);
      expect(summary.changes.revoked).toEqual(['deploy-bot']);
      // Still listening where it started, with the new grants in force.
      expect((await list(await connect(OTHER_TOKEN))).isError).toBeFalsy();
      await expect(connect(AGENT_TOKEN)).rejects.toThrow(UNAUTHORIZED);
    } finally {
      await reloadWith((doc) => ({
        ...doc,
        listen: { host: '127.0.0.1', port: 0 },
        grants: [DEPLOY_BOT, CI_BOT],
      }));
    }
  });

  it('the trail records the grants in force at start and after each reload, by id and owner, never a token', async () => {
    const redis = await connectTestRedis();
    const events = await new AuditLog({ redis, prefix: gateway.prefix }).query({
      type: 'policy',
      limit: 10_000,
    });
    redis.disconnect();
    const grants = events.filter((e) => e.reason?.startsWith('grants_'));
    expect(grants[0]).toMatchObject({
      reason: 'grants_loaded',
      message: 'grants in force: deploy-bot (owner olga@example.com), ci-bot (owner carl@example.com)',
    });
    expect(grants).toContainEqual(
      expect.objectContaining({
        reason: 'grants_reloaded',
        message: 'grants in force: ci-bot (owner carl@example.com); revoked: deploy-bot',
      }),
    );
    const all = JSON.stringify(events);
    expect(all).not.toContain(AGENT_TOKEN);
    expect(all).not.toContain(sha(AGENT_TOKEN));
  });
});

describe('SIGHUP on `countersign serve` reloads the grants', () => {
  it('revokes a token at once and warns about a setting that needs a restart', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-grant-sighup-'));
    const prefix = uniquePrefix('grant-sighup');
    const config = {
      listen: { port: 0 },
      redis: { url: testRedisUrl(), prefix },
      servers: { aws: toyServer('aws.json') },
      grants: [
        { id: 'deploy-bot', owner: 'olga', token_env: 'DEPLOY_BOT_TOKEN' },
        { id: 'ci-bot', owner: 'carl', token_env: 'CI_BOT_TOKEN' },
      ],
    };
    const file = await writeServeFiles(dir, config, { 'aws.json': policy });
    const serve = await startServe(file, {
      cwd: dir,
      env: { DEPLOY_BOT_TOKEN: AGENT_TOKEN, CI_BOT_TOKEN: OTHER_TOKEN },
    });
    try {
      const agent = await connectClient(`${serve.url}/mcp`, { token: AGENT_TOKEN });
      expect(
        ((await agent.callTool({ name: 'ListClusters', arguments: {} })) as CallToolResult).isError,
      ).toBeFalsy();
      await writeFile(
        file,
        JSON.stringify({ ...config, listen: { port: 1 }, grants: config.grants.slice(1) }),
      );
      serve.child.kill('SIGHUP');
      await until(async () => (serve.log().includes('SIGHUP: policies reloaded') ? true : undefined), 10_000);
      expect(serve.log()).toMatch(/need a restart.*listen/);
      await expect(agent.callTool({ name: 'ListClusters', arguments: {} })).rejects.toThrow(UNAUTHORIZED);
      const other = await connectClient(`${serve.url}/mcp`, { token: OTHER_TOKEN });
      expect(
        ((await other.callTool({ name: 'ListClusters', arguments: {} })) as CallToolResult).isError,
      ).toBeFalsy();
      await other.close();
      await agent.close().catch(() => undefined);
    } finally {
      if (serve.child.exitCode === null) {
        const exited = new Promise((resolve) => serve.child.once('exit', resolve));
        serve.child.kill('SIGTERM');
        await exited;
      }
      const redis = await connectTestRedis();
      await dropPrefix(redis, prefix);
      redis.disconnect();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SIGHUP on `countersign stdio` reloads the grants', () => {
  it('keeps serving while its grant stays, and ends the session when a reload revokes it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-grant-stdio-'));
    const prefix = uniquePrefix('grant-stdio');
    const config = {
      redis: { url: testRedisUrl(), prefix },
      servers: { aws: toyServer('aws.json') },
      grants: [DEPLOY_BOT, CI_BOT],
    };
    const file = await writeServeFiles(dir, config, { 'aws.json': policy });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: cliCommand(['stdio', '--config', file, '--grant', 'deploy-bot']),
      cwd: dir,
      env: { PATH: String(process.env.PATH), LOG_LEVEL: 'info' },
      stderr: 'pipe',
    });
    let log = '';
    transport.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const client = new Client({ name: 'ide', version: '1' });
    let closed = false;
    client.onclose = () => {
      closed = true;
    };
    try {
      await client.connect(transport);
      const list = () => client.callTool({ name: 'ListClusters', arguments: {} }) as Promise<CallToolResult>;
      expect((await list()).isError).toBeFalsy();
      const pid = transport.pid as number;

      // A reload that keeps the grant (with another owner): the session goes on.
      await writeFile(
        file,
        JSON.stringify({ ...config, grants: [{ ...DEPLOY_BOT, owner: 'alice' }, CI_BOT] }),
      );
      process.kill(pid, 'SIGHUP');
      await until(async () => (log.includes('SIGHUP: policies reloaded') ? true : undefined), 10_000);
      expect((await list()).isError).toBeFalsy();

      await writeFile(file, JSON.stringify({ ...config, grants: [CI_BOT] }));
      process.kill(pid, 'SIGHUP');
      await until(async () => (closed ? true : undefined), 10_000, 'the stdio session to end');
      expect(log).toContain('grant revoked by the reload: this session ends');
    } finally {
      await client.close().catch(() => undefined);
      const redis = await connectTestRedis();
      await dropPrefix(redis, prefix);
      redis.disconnect();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
