import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../src/audit/log.js';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { connectTestRedis } from './support/redis.js';

const textOf = (r: CallToolResult): string => (r.content[0] as { text: string }).text;

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('upstream lifecycle', () => {
  let gateway: TestGateway;
  let client: Client;
  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'p.json': { version: '1', default: 'allow' } },
      config: { servers: { toy: toyServer('p.json') } },
    });
    client = await connectClient(`${gateway.url}/mcp`);
  });
  afterAll(async () => {
    await client?.close();
    await gateway?.stop();
  });

  it('a server that crashes mid-call gives a clear error, is restarted, and the next call works', async () => {
    const pidBefore = textOf((await client.callTool({ name: 'pid', arguments: {} })) as CallToolResult);
    await expect(client.callTool({ name: 'crash', arguments: {} })).rejects.toThrow(
      /upstream server "toy" closed the connection while "tools\/call" was in flight; the request was not retried/,
    );
    const pidAfter = await until(async () => {
      const result = (await client.callTool({ name: 'pid', arguments: {} })) as CallToolResult;
      return result.isError ? undefined : textOf(result);
    }, 10_000);
    expect(pidAfter).not.toBe(pidBefore);

    const redis = await connectTestRedis();
    const results = await new AuditLog({ redis, prefix: gateway.prefix }).query({ type: 'result', tool: 'crash' });
    redis.disconnect();
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ outcome: 'upstream_error' });
  });

  it('relays cancellation to the upstream server', async () => {
    const controller = new AbortController();
    const pending = client.callTool({ name: 'sleep', arguments: { ms: 20_000 } }, undefined, { signal: controller.signal });
    await new Promise((r) => setTimeout(r, 300));
    controller.abort('user gave up');
    await expect(pending).rejects.toThrow();
    // The toy server subtracts 1000 from its call count when a sleep is cancelled.
    const count = await until(async () => {
      const n = Number(textOf((await client.callTool({ name: 'count', arguments: {} })) as CallToolResult));
      return n < 0 ? n : undefined;
    }, 5000);
    expect(count).toBeLessThan(0);
  });
});

describe('list_changed notifications', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'p.json': { version: '1', default: 'allow' } },
      config: { servers: { toy: toyServer('p.json') } },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('relays tools/list_changed and serves the new tool list', async () => {
    const client = await connectClient(`${gateway.url}/mcp`);
    let changed = 0;
    const { ToolListChangedNotificationSchema } = await import('@modelcontextprotocol/sdk/types.js');
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      changed += 1;
    });
    expect((await client.listTools()).tools.map((t) => t.name)).not.toContain('late-tool');
    await client.callTool({ name: 'add-tool', arguments: { name: 'late-tool' } });
    await until(async () => (changed > 0 ? true : undefined), 5000);
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('late-tool');
    const ran = (await client.callTool({ name: 'late-tool', arguments: {} })) as CallToolResult;
    expect(textOf(ran)).toBe('late-tool ran');
    await client.close();
  });
});
