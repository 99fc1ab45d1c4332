import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../../src/audit/log.js';
import { startServe } from '../support/cli.js';
import type { ServeProcess } from '../support/cli.js';
import { connectClient, toyServer } from '../support/gateway.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from '../support/redis.js';

const POLICY = {
  version: '1',
  default: 'allow',
  tools: {
    CloneContainerToECR: { limits: [{ counter: 'clone', window: 'hour', max: 10, scope: 'global' }] },
  },
};

const startReplica = (dir: string, configFile: string): Promise<ServeProcess> =>
  startServe(configFile, { cwd: dir, env: { LOG_LEVEL: 'warn' } });

describe('two gateway replicas on one Redis', () => {
  let dir: string;
  const prefix = uniquePrefix('replicas');
  let a: Awaited<ReturnType<typeof startReplica>>;
  let b: Awaited<ReturnType<typeof startReplica>>;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-replicas-'));
    await writeFile(path.join(dir, 'p.json'), JSON.stringify(POLICY));
    const configFile = path.join(dir, 'countersign.json');
    await writeFile(
      configFile,
      JSON.stringify({
        listen: { port: 0 },
        redis: { url: testRedisUrl(), prefix },
        servers: { toy: toyServer('p.json') },
      }),
    );
    [a, b] = await Promise.all([startReplica(dir, configFile), startReplica(dir, configFile)]);
  }, 60_000);
  afterAll(async () => {
    for (const replica of [a, b]) if (replica?.child.exitCode === null) replica.child.kill('SIGKILL');
    const redis = await connectTestRedis();
    await dropPrefix(redis, prefix);
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  it('share one exact global limit: 100 concurrent calls split over both admit exactly 10', async () => {
    const clients: Client[] = await Promise.all([
      connectClient(`${a.url}/mcp`),
      connectClient(`${a.url}/mcp`),
      connectClient(`${b.url}/mcp`),
      connectClient(`${b.url}/mcp`),
    ]);
    const results = (await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        clients[i % 4]?.callTool({ name: 'CloneContainerToECR', arguments: { repositoryName: `r${i}` } }),
      ),
    )) as CallToolResult[];
    expect(results.filter((r) => !r.isError)).toHaveLength(10);
    await Promise.all(clients.map((c) => c.close()));
  });

  it('one replica killed under load: the other keeps serving and the shared audit chain stays intact', async () => {
    const onA = await connectClient(`${a.url}/mcp`);
    const onB = await connectClient(`${b.url}/mcp`);
    let running = true;
    const served = { a: 0, b: 0, bFailed: 0 };
    const loopA = (async () => {
      while (running) {
        try {
          // A call in flight when A dies never gets an answer: the client's own timeout ends it.
          await onA.callTool({ name: 'DescribeCluster', arguments: { id: 'a' } }, undefined, {
            timeout: 2000,
          });
          served.a += 1;
        } catch {
          return; // replica A is gone
        }
      }
    })();
    const loopB = (async () => {
      while (running) {
        const result = (await onB.callTool({
          name: 'DescribeCluster',
          arguments: { id: 'b' },
        })) as CallToolResult;
        if (result.isError) served.bFailed += 1;
        else served.b += 1;
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    a.child.kill('SIGKILL');
    const bBeforeKill = served.b;
    await new Promise((r) => setTimeout(r, 1000));
    running = false;
    await Promise.all([loopA, loopB]);
    await onB.close();
    await onA.close().catch(() => undefined);
    expect(served.a).toBeGreaterThan(0);
    expect(served.b).toBeGreaterThan(bBeforeKill);
    expect(served.bFailed).toBe(0);

    const redis = await connectTestRedis();
    const log = new AuditLog({ redis, prefix });
    const verified = await log.verify();
    const fromB = await log.query({ type: 'result', tool: 'DescribeCluster', limit: 1_000_000 });
    redis.disconnect();
    expect(verified.ok).toBe(true);
    expect(fromB.length).toBeGreaterThanOrEqual(served.a + served.b);
    b.child.kill('SIGTERM');
  }, 30_000);
});
