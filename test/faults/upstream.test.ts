import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../../src/audit/log.js';
import { connectClient, startTestGateway, toyServer } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import { connectTestRedis } from '../support/redis.js';

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

describe('upstream faults', () => {
  let gateway: TestGateway;
  let client: Client;
  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: {
        'p.json': {
          version: '1',
          default: 'allow',
          tools: { crash: { limits: [{ counter: 'crash_rate', window: 'hour', max: 2, scope: 'grant' }] } },
        },
      },
      config: { servers: { toy: toyServer('p.json', { timeout_ms: 800 }) } },
    });
    client = await connectClient(`${gateway.url}/mcp`);
  });
  afterAll(async () => {
    await client?.close();
    await gateway?.stop();
  });

  const waitForRestart = (): Promise<string> =>
    until(async () => {
      const result = (await client.callTool({ name: 'pid', arguments: {} })) as CallToolResult;
      return result.isError ? undefined : textOf(result);
    }, 10_000);

  it('a server that crashes mid-call: clear error, counter released, server restarted, next call works', async () => {
    const pidBefore = textOf((await client.callTool({ name: 'pid', arguments: {} })) as CallToolResult);
    // Three crashes against a limit of 2 an hour: each interrupted call gives its unit back.
    for (let i = 0; i < 3; i++) {
      await expect(client.callTool({ name: 'crash', arguments: {} })).rejects.toThrow(
        /upstream server "toy" closed the connection while "tools\/call" was in flight; the request was not retried/,
      );
      const pidAfter = await waitForRestart();
      expect(pidAfter).not.toBe(pidBefore);
    }
    const redis = await connectTestRedis();
    const log = new AuditLog({ redis, prefix: gateway.prefix });
    const results = await log.query({ type: 'result', tool: 'crash' });
    const decisions = await log.query({ type: 'decision', tool: 'crash' });
    redis.disconnect();
    expect(decisions.map((e) => e.decision)).toEqual(['allow', 'allow', 'allow']);
    expect(results.map((e) => e.outcome)).toEqual(['interrupted', 'interrupted', 'interrupted']);
  });

  it('a server that hangs: the call fails after timeout_ms with a clear error, nothing stays in flight, and the server is asked to cancel', async () => {
    const started = Date.now();
    await expect(client.callTool({ name: 'sleep', arguments: { ms: 20_000 } })).rejects.toThrow(
      /upstream server "toy" did not answer "tools\/call" within 800 ms \(timeout_ms\)/,
    );
    expect(Date.now() - started).toBeLessThan(5000);
    // Nothing is left in flight or parked in the gateway.
    expect(gateway.services.inflight.size).toBe(0);
    expect(gateway.services.approvals.parking.size).toBe(0);
    // The toy server subtracts 1000 from its call count when a sleep is cancelled.
    const count = await until(async () => {
      const n = Number(textOf((await client.callTool({ name: 'count', arguments: {} })) as CallToolResult));
      return n < 0 ? n : undefined;
    }, 5000);
    expect(count).toBeLessThan(0);
  });

  it("relays a client's cancellation to the upstream server", async () => {
    const before = Number(
      textOf((await client.callTool({ name: 'count', arguments: {} })) as CallToolResult),
    );
    const controller = new AbortController();
    const pending = client.callTool({ name: 'sleep', arguments: { ms: 600 } }, undefined, {
      signal: controller.signal,
    });
    await new Promise((r) => setTimeout(r, 200));
    controller.abort('user gave up');
    await expect(pending).rejects.toThrow();
    const after = await until(async () => {
      const n = Number(textOf((await client.callTool({ name: 'count', arguments: {} })) as CallToolResult));
      return n <= before - 1000 ? n : undefined;
    }, 5000);
    expect(after).toBeLessThanOrEqual(before - 1000);
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
