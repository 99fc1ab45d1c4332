import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../../src/audit/log.js';
import { parseConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/gateway/gateway.js';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import { silentLogger } from '../../src/log/logger.js';
import { createRedis, waitReady } from '../../src/redis/client.js';
import { startEmbeddedRedis } from '../../src/redis/embedded.js';
import type { EmbeddedRedis } from '../../src/redis/embedded.js';
import { connectClient, toyServer } from '../support/gateway.js';

const POLICY = {
  version: '1',
  default: 'allow',
  tools: { CloneContainerToECR: { rate_limit: { max: 100_000, window: 'minute' } } },
};
const decision = (r: CallToolResult): Record<string, unknown> =>
  (r._meta?.['countersign/decision'] ?? {}) as Record<string, unknown>;
const textOf = (r: CallToolResult): string => (r.content[0] as { text: string }).text;

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Outcome {
  started: number;
  ended: number;
  allowed: boolean;
  reason?: string;
}

describe('Redis killed under load and restarted', () => {
  let dir: string;
  let redis: EmbeddedRedis;
  let gateway: RunningGateway;
  let clients: Client[];
  let port: number;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-outage-'));
    redis = await startEmbeddedRedis({ dir: path.join(dir, 'redis'), reuse: false });
    port = Number(new URL(redis.url).port);
    await writeFile(path.join(dir, 'p.json'), JSON.stringify(POLICY));
    const config = parseConfig(
      JSON.stringify({
        listen: { port: 0 },
        servers: { toy: toyServer('p.json') },
        data_dir: path.join(dir, 'state'),
      }),
      path.join(dir, 'countersign.json'),
      {},
    );
    gateway = await startGateway({ config, redisUrl: redis.url, logger: silentLogger() });
    clients = await Promise.all(Array.from({ length: 4 }, () => connectClient(`${gateway.url}/mcp`)));
  });

  afterAll(async () => {
    await Promise.all((clients ?? []).map((c) => c.close()));
    await gateway?.close();
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses every call while Redis is down, recovers when it returns, and loses no audit event', async () => {
    const outcomes: Outcome[] = [];
    let running = true;
    const worker = async (client: Client, n: number): Promise<void> => {
      for (let i = 0; running; i++) {
        const started = Date.now();
        const tool = i % 2 === 0 ? 'CloneContainerToECR' : 'DescribeCluster';
        const result = (await client.callTool({
          name: tool,
          arguments: { repositoryName: `r${n}-${i}`, id: `${n}-${i}` },
        })) as CallToolResult;
        outcomes.push({
          started,
          ended: Date.now(),
          allowed: !result.isError,
          reason: decision(result).reason as string | undefined,
        });
      }
    };
    const workers = clients.flatMap((client, n) => [worker(client, n), worker(client, n + 10)]);

    await new Promise((r) => setTimeout(r, 700));
    await redis.stop();
    const down = Date.now();
    await new Promise((r) => setTimeout(r, 700));
    const ready = await fetch(`${gateway.url}/readyz`);
    expect(ready.status).toBe(503);
    const restarting = Date.now();
    redis = await startEmbeddedRedis({ dir: path.join(dir, 'redis'), reuse: false, port });
    await until(async () => (await fetch(`${gateway.url}/readyz`)).status === 200, 15_000);
    await new Promise((r) => setTimeout(r, 700));
    running = false;
    await Promise.all(workers);

    const during = outcomes.filter((o) => o.started > down && o.ended < restarting);
    expect(during.length).toBeGreaterThan(10);
    expect(during.filter((o) => o.allowed)).toEqual([]);
    expect(new Set(during.map((o) => o.reason))).toEqual(new Set(['store_unavailable', 'audit_unavailable']));
    const after = outcomes.filter(
      (o) => o.started > restarting + 3000 || (o.started > restarting && o.allowed),
    );
    expect(after.some((o) => o.allowed)).toBe(true);

    // Every allowed call ran upstream exactly once; no refused call ran. (Each session has its own
    // upstream process, so the executions are the sum of every session's count.)
    const allowed = outcomes.filter((o) => o.allowed).length;
    const counts = await Promise.all(
      clients.map(async (c) =>
        Number(textOf((await c.callTool({ name: 'count', arguments: {} })) as CallToolResult)),
      ),
    );
    expect(counts.reduce((a, b) => a + b, 0)).toBe(allowed);

    // No audit event lost: refusals made while Redis was down were spooled and appended on its return.
    await gateway.services.auditSpool.drain();
    expect(gateway.services.auditSpool.size).toBe(0);
    const check = createRedis(redis.url, 'check');
    await waitReady(check, 5000);
    const log = new AuditLog({ redis: check, prefix: 'cs:' });
    // A write whose reply was lost when Redis died may be appended again from the spool (same id): count ids.
    const unique = <T extends { id: string }>(events: T[]): T[] => [
      ...new Map(events.map((e) => [e.id, e])).values(),
    ];
    const decisions = unique(await log.query({ type: 'decision', limit: 1_000_000 }));
    const results = unique(await log.query({ type: 'result', limit: 1_000_000 }));
    const verified = await log.verify();
    check.disconnect();
    expect(verified.ok).toBe(true);
    expect(
      decisions.filter((e) => e.decision === 'allow' && e.tool !== 'count').length,
    ).toBeGreaterThanOrEqual(allowed);
    expect(results.filter((e) => e.tool !== 'count').length).toBe(allowed);
    expect(decisions.filter((e) => e.decision === 'deny').length).toBe(outcomes.length - allowed);
  }, 60_000);
});
