import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../src/audit/log.js';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { connectTestRedis } from './support/redis.js';

// The PolicyLayer document from its own docs, byte for byte.
const POLICYLAYER_DOC =
  '{"version":"1","default":"deny","tools":{"CloneContainerToECR":{"limits":[{"counter":"clonecontainertoecr_rate","window":"minute","max":10,"scope":"grant"}]}}}';

const sha = (token: string): string => createHash('sha256').update(token).digest('hex');
const meta = (result: CallToolResult): Record<string, unknown> =>
  (result._meta?.['countersign/decision'] ?? {}) as Record<string, unknown>;
const text = (result: CallToolResult): string => (result.content[0] as { text: string }).text;

describe('a PolicyLayer document, loaded unchanged', () => {
  let gateway: TestGateway;
  let alice: Client;
  let bob: Client;
  // Fixed clock 10 s into a UTC minute, so all calls fall in one window and the retry time is known.
  const now = Date.UTC(2026, 10, 23, 9, 30, 10);

  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'ecr.json': POLICYLAYER_DOC },
      config: {
        servers: { ecr: toyServer('ecr.json') },
        grants: [
          { id: 'alice-bot', owner: 'alice@example.com', token_sha256: sha('alice-token') },
          { id: 'bob-bot', owner: 'bob@example.com', token_sha256: sha('bob-token') },
        ],
      },
      now: () => now,
    });
    alice = await connectClient(`${gateway.url}/mcp/ecr`, { token: 'alice-token' });
    bob = await connectClient(`${gateway.url}/mcp/ecr`, { token: 'bob-token' });
  });
  afterAll(async () => {
    await alice?.close();
    await bob?.close();
    await gateway?.stop();
  });

  it('admits 10 calls a minute per grant, refuses the 11th with a retry time, and leaves other grants their own 10', async () => {
    const call = (client: Client, i: number) =>
      client.callTool({
        name: 'CloneContainerToECR',
        arguments: { repositoryName: `repo-${i}` },
      }) as Promise<CallToolResult>;
    for (let i = 0; i < 10; i++) {
      const result = await call(alice, i);
      expect(result.isError).toBeFalsy();
      expect(text(result)).toContain(`cloned into repo-${i}`);
    }
    const eleventh = await call(alice, 10);
    expect(eleventh.isError).toBe(true);
    expect(text(eleventh)).toContain('rate limit reached');
    expect(text(eleventh)).toContain('Retry after 2026-11-23T09:31:00.000Z (in 50 s)');
    expect(meta(eleventh)).toMatchObject({
      decision: 'deny',
      reason: 'rate_limited',
      retryAfterSeconds: 50,
      retryAt: '2026-11-23T09:31:00.000Z',
      rule: 'ecr.json#/tools/CloneContainerToECR/limits/0',
    });
    for (let i = 0; i < 10; i++) expect((await call(bob, i)).isError).toBeFalsy();
    expect((await call(bob, 10)).isError).toBe(true);
  });

  it('refuses every other tool under default deny, but keeps it listed', async () => {
    const { tools } = await alice.listTools();
    expect(tools.map((t) => t.name)).toEqual(
      expect.arrayContaining(['CloneContainerToECR', 'DescribeCluster', 'count']),
    );
    const result = (await alice.callTool({
      name: 'DescribeCluster',
      arguments: { id: 'c1' },
    })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(meta(result)).toMatchObject({ reason: 'default_deny', rule: 'ecr.json#/default' });
    expect(text(result)).toContain('DescribeCluster');
  });

  it('records every decision in the audit trail, which verifies', async () => {
    const redis = await connectTestRedis();
    const log = new AuditLog({ redis, prefix: gateway.prefix });
    const decisions = await log.query({ type: 'decision' });
    const aliceEcr = decisions.filter((e) => e.grant === 'alice-bot' && e.tool === 'CloneContainerToECR');
    expect(aliceEcr.filter((e) => e.decision === 'allow')).toHaveLength(10);
    expect(aliceEcr.filter((e) => e.decision === 'deny' && e.reason === 'rate_limited')).toHaveLength(1);
    expect(decisions.filter((e) => e.grant === 'bob-bot' && e.decision === 'allow')).toHaveLength(10);
    expect(decisions.some((e) => e.tool === 'DescribeCluster' && e.reason === 'default_deny')).toBe(true);
    const results = await log.query({ type: 'result', grant: 'alice-bot' });
    expect(results).toHaveLength(10);
    expect(results.every((e) => e.outcome === 'ok' && typeof e.durationMs === 'number')).toBe(true);
    // Arguments are not stored by default: only their hash.
    expect(aliceEcr[0]?.args).toBeUndefined();
    expect(aliceEcr[0]?.argsSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await log.verify()).toMatchObject({ ok: true });
    redis.disconnect();
  });
});

describe('limits under concurrency, end to end', () => {
  it('admits exactly 10 of 200 concurrent calls against max 10, and every refusal carries a retry time', async () => {
    const gateway = await startTestGateway({
      policies: {
        'p.json': {
          version: '1',
          default: 'deny',
          tools: { DescribeCluster: { rate_limit: { max: 10, window: 'hour' } } },
        },
      },
      config: { servers: { toy: toyServer('p.json') } },
    });
    const clients = await Promise.all(Array.from({ length: 4 }, () => connectClient(`${gateway.url}/mcp`)));
    const results = (await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        clients[i % clients.length]?.callTool({ name: 'DescribeCluster', arguments: { id: String(i) } }),
      ),
    )) as CallToolResult[];
    const refused = results.filter((r) => r.isError);
    expect(results.length - refused.length).toBe(10);
    expect(refused).toHaveLength(190);
    for (const r of refused)
      expect(meta(r)).toMatchObject({ reason: 'rate_limited', retryAfterSeconds: expect.any(Number) });
    await Promise.all(clients.map((c) => c.close()));
    await gateway.stop();
  }, 60_000);
});
