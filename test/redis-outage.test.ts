import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { parseConfig } from '../src/config/load.js';
import { startGateway } from '../src/gateway/gateway.js';
import type { RunningGateway } from '../src/gateway/gateway.js';
import { silentLogger } from '../src/log/logger.js';
import { startEmbeddedRedis } from '../src/redis/embedded.js';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { connectClient, toyServer } from './support/gateway.js';

const POLICY = {
  version: '1',
  default: 'allow',
  tools: { CloneContainerToECR: { rate_limit: { max: 100, window: 'minute' } } },
};
const decision = (r: CallToolResult): Record<string, unknown> => (r._meta?.['countersign/decision'] ?? {}) as Record<string, unknown>;

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('Redis outage: fail closed, then recover', () => {
  let dir: string;
  let redis: EmbeddedRedis;
  let gateway: RunningGateway;
  let client: Client;
  let port: number;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-outage-'));
    redis = await startEmbeddedRedis({ dir: path.join(dir, 'redis'), reuse: false });
    port = Number(new URL(redis.url).port);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(path.join(dir, 'p.json'), JSON.stringify(POLICY));
    const config = parseConfig(
      JSON.stringify({ listen: { port: 0 }, servers: { toy: toyServer('p.json') } }),
      path.join(dir, 'countersign.json'),
      {},
    );
    gateway = await startGateway({ config, redisUrl: redis.url, logger: silentLogger() });
    client = await connectClient(`${gateway.url}/mcp`);
  });

  afterAll(async () => {
    await client?.close();
    await gateway?.close();
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses every call while Redis is down, says why, reports not ready, and recovers when it returns', async () => {
    const clone = () => client.callTool({ name: 'CloneContainerToECR', arguments: { repositoryName: 'r' } }) as Promise<CallToolResult>;
    const count = () => client.callTool({ name: 'count', arguments: {} }) as Promise<CallToolResult>;
    expect((await clone()).isError).toBeFalsy();
    expect((await count()).isError).toBeFalsy();
    const upstreamCallsBefore = Number(((await count()).content[0] as { text: string }).text);

    await redis.stop();
    const limited = await clone();
    expect(limited.isError).toBe(true);
    expect(decision(limited)).toMatchObject({ reason: 'store_unavailable' });
    expect((limited.content[0] as { text: string }).text).toContain('policy store unavailable');
    const unlimited = await count();
    expect(unlimited.isError).toBe(true);
    expect(decision(unlimited)).toMatchObject({ reason: 'audit_unavailable' });
    const ready = await fetch(`${gateway.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ status: 'not ready' });

    redis = await startEmbeddedRedis({ dir: path.join(dir, 'redis'), reuse: false, port });
    await until(async () => (await fetch(`${gateway.url}/readyz`)).status === 200, 15_000);
    expect((await clone()).isError).toBeFalsy();
    const after = Number(((await count()).content[0] as { text: string }).text);
    // Only the clone after recovery reached the upstream: the one refused during the outage never did.
    expect(after).toBe(upstreamCallsBefore + 1);
  }, 40_000);
});
