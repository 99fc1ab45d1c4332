import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { startEverythingHttp } from './support/everything-http.js';

const POLICY = { version: '1', default: 'deny', tools: { echo: {} } };

describe('remote upstream servers', () => {
  let streamable: Awaited<ReturnType<typeof startEverythingHttp>>;
  let sse: Awaited<ReturnType<typeof startEverythingHttp>>;
  let gateway: TestGateway;
  beforeAll(async () => {
    [streamable, sse] = await Promise.all([
      startEverythingHttp('streamableHttp'),
      startEverythingHttp('sse'),
    ]);
    gateway = await startTestGateway({
      policies: { 'p.json': POLICY },
      config: {
        servers: {
          streamable: { url: `http://127.0.0.1:${streamable.port}/mcp`, policy: 'p.json' },
          // `auto` tries Streamable HTTP first and falls back to SSE for this older-style server.
          legacy: { url: `http://127.0.0.1:${sse.port}/sse`, policy: 'p.json' },
        },
      },
    });
  }, 60_000);
  afterAll(async () => {
    await gateway?.stop();
    await streamable?.stop();
    await sse?.stop();
  });

  it('proxies a Streamable HTTP server and an SSE server under the same policy', async () => {
    for (const server of ['streamable', 'legacy']) {
      const client = await connectClient(`${gateway.url}/mcp/${server}`);
      const echoed = (await client.callTool({
        name: 'echo',
        arguments: { message: `via ${server}` },
      })) as CallToolResult;
      expect(echoed.content).toEqual([{ type: 'text', text: `Echo: via ${server}` }]);
      const denied = (await client.callTool({
        name: 'get-sum',
        arguments: { a: 1, b: 2 },
      })) as CallToolResult;
      expect(denied.isError).toBe(true);
      expect(denied._meta?.['countersign/decision']).toMatchObject({ reason: 'default_deny' });
      await client.close();
    }
  });

  it('recovers when a remote upstream restarts and forgets its sessions: the gateway opens a new one', async () => {
    const client = await connectClient(`${gateway.url}/mcp/streamable`);
    const echo = async (message: string): Promise<string> => {
      const result = (await client.callTool({ name: 'echo', arguments: { message } })) as CallToolResult;
      if (result.isError) throw new Error(JSON.stringify(result.content));
      return JSON.stringify(result.content);
    };
    expect(await echo('before')).toContain('Echo: before');
    await streamable.stop();
    streamable = await startEverythingHttp('streamableHttp', streamable.port);
    // The restarted server answers the old session id with an error ("No valid session ID"); the gateway
    // drops that session and reconnects, so calls work again without the agent doing anything.
    const failures: string[] = [];
    let answer: string | undefined;
    const deadline = Date.now() + 15_000;
    while (answer === undefined && Date.now() < deadline) {
      try {
        answer = await echo('after');
      } catch (error) {
        failures.push((error as Error).message);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    expect(answer).toContain('Echo: after');
    expect(failures.length).toBeGreaterThan(0);
    expect(failures[0]).toContain('no longer knows our session');
    await client.close();
  });
});
