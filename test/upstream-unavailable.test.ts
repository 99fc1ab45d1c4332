import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';

const initialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: LATEST_PROTOCOL_VERSION,
    capabilities: {},
    clientInfo: { name: 'raw', version: '1' },
  },
});

describe('an upstream server that cannot be reached', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'p.json': { version: '1', default: 'allow' } },
      config: {
        servers: {
          missing: { command: '/nonexistent/mcp-server', policy: 'p.json' },
          closed: { url: 'http://127.0.0.1:1/mcp', transport: 'streamable-http', policy: 'p.json' },
        },
      },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('answers initialize with 502 and a JSON-RPC error naming the problem, and keeps serving', async () => {
    for (const server of ['missing', 'closed']) {
      const res = await fetch(`${gateway.url}/mcp/${server}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: initialize,
      });
      expect(res.status).toBe(502);
      const body = (await res.json()) as { error: { code: number; message: string } };
      expect(body.error.message).toContain('cannot connect to the upstream server');
    }
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
  });
});
