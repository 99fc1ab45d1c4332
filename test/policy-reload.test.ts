import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startServe } from './support/cli.js';
import type { ServeProcess } from './support/cli.js';
import { connectClient, toyServer } from './support/gateway.js';
import { AuditLog } from '../src/audit/log.js';
import { connectTestRedis, testRedisUrl, uniquePrefix } from './support/redis.js';

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('SIGHUP reloads policies', () => {
  let dir: string;
  let serve: ServeProcess;
  const prefix = uniquePrefix('reload');
  const policyFile = (): string => path.join(dir, 'p.json');

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-reload-'));
    await writeFile(
      policyFile(),
      JSON.stringify({ version: '1', default: 'deny', tools: { DescribeCluster: {} } }),
    );
    const configFile = path.join(dir, 'countersign.json');
    await writeFile(
      configFile,
      JSON.stringify({
        listen: { port: 0 },
        redis: { url: testRedisUrl(), prefix },
        servers: { toy: toyServer('p.json') },
      }),
    );
    serve = await startServe(configFile, { cwd: dir, env: { LOG_LEVEL: 'info' } });
  });
  afterAll(async () => {
    serve?.child.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  });

  it('swaps in a valid policy for open sessions, and keeps the old one when the new file is broken', async () => {
    const client = await connectClient(`${serve.url}/mcp`);
    let changed = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      changed += 1;
    });
    const describe = () =>
      client.callTool({ name: 'DescribeCluster', arguments: {} }) as Promise<CallToolResult>;
    expect((await describe()).isError).toBeFalsy();

    await writeFile(policyFile(), JSON.stringify({ version: '1', default: 'deny', hide: ['Describe*'] }));
    serve.child.kill('SIGHUP');
    await until(() => serve.log().includes('SIGHUP: policies reloaded'), 10_000);
    await expect(describe()).rejects.toThrow(/Unknown tool: DescribeCluster/);
    expect((await client.listTools()).tools.map((t) => t.name)).not.toContain('DescribeCluster');
    await until(() => changed > 0, 5000);

    await writeFile(
      policyFile(),
      '{"version": "1", "default": "allow", "tools": {"DescribeCluster": {"deny-if": []}}}',
    );
    serve.child.kill('SIGHUP');
    await until(() => serve.log().includes('policies NOT reloaded'), 10_000);
    expect(serve.log()).toContain('unknown key');
    // Still the previous (valid) policy: hidden, not allowed by the broken file's default.
    await expect(describe()).rejects.toThrow(/Unknown tool: DescribeCluster/);
    await client.close();

    // The trail says which policy text was in force when: at start and after the good reload only.
    const redis = await connectTestRedis();
    const events = await new AuditLog({ redis, prefix }).query({ type: 'policy' });
    redis.disconnect();
    expect(events.map((e) => e.reason)).toEqual([
      'policies_loaded',
      'grants_loaded',
      'policies_reloaded',
      'grants_reloaded',
    ]);
    expect(events[0]?.message).toMatch(/^p\.json sha256=[0-9a-f]{64}$/);
    expect(events[2]?.message).not.toBe(events[0]?.message);
    expect(events[1]?.message).toBe('grants in force: local (owner local)');
  });
});
