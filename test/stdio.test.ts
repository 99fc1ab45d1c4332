import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../src/audit/log.js';
import { REPO_ROOT, toyServer } from './support/gateway.js';
import { runCli } from './support/cli.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from './support/redis.js';

describe('countersign stdio', () => {
  let dir: string;
  let configFile: string;
  const prefix = uniquePrefix('stdio');

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-stdio-'));
    await writeFile(
      path.join(dir, 'p.json'),
      JSON.stringify({
        version: '1',
        default: 'deny',
        tools: { DescribeCluster: { rate_limit: { max: 2, window: 'hour' } } },
      }),
    );
    configFile = path.join(dir, 'countersign.json');
    await writeFile(
      configFile,
      JSON.stringify({
        redis: { url: testRedisUrl(), prefix },
        servers: { toy: toyServer('p.json') },
        grants: [
          { id: 'ide', owner: 'carol', token_sha256: createHash('sha256').update('unused').digest('hex') },
        ],
      }),
    );
  });
  afterAll(async () => {
    const redis = await connectTestRedis();
    await dropPrefix(redis, prefix);
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves a client that launches it, under the policy, as the given grant', async () => {
    const client = new Client({ name: 'ide', version: '1' });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [
          '--import',
          'tsx',
          path.join(REPO_ROOT, 'src/cli/main.ts'),
          'stdio',
          '--config',
          configFile,
          '--grant',
          'ide',
        ],
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'warn' },
        stderr: 'ignore',
      }),
    );
    const tools = (await client.listTools()).tools.map((t) => t.name);
    expect(tools).toContain('DescribeCluster');
    const outcomes: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      const result = (await client.callTool({
        name: 'DescribeCluster',
        arguments: { id: String(i) },
      })) as CallToolResult;
      outcomes.push(Boolean(result.isError));
    }
    expect(outcomes).toEqual([false, false, true]);
    const denied = (await client.callTool({ name: 'DeleteCluster', arguments: {} })) as CallToolResult;
    expect(denied.isError).toBe(true);
    await client.close();

    const redis = await connectTestRedis();
    const events = await new AuditLog({ redis, prefix }).query({ type: 'decision' });
    redis.disconnect();
    expect(events.map((e) => [e.grant, e.owner, e.tool, e.reason])).toEqual([
      ['ide', 'carol', 'DescribeCluster', 'allowed'],
      ['ide', 'carol', 'DescribeCluster', 'allowed'],
      ['ide', 'carol', 'DescribeCluster', 'rate_limited'],
      ['ide', 'carol', 'DeleteCluster', 'default_deny'],
    ]);
    expect(events.every((e) => e.session?.startsWith('stdio-'))).toBe(true);
  });

  it('refuses to start with an unknown grant', async () => {
    const result = await runCli(['stdio', '--config', configFile, '--grant', 'mallory']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('no grant "mallory"');
  });
});
