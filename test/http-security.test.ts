import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { parseConfig } from '../src/config/load.js';

const sha = (token: string): string => createHash('sha256').update(token).digest('hex');
const POLICY = { version: '1', default: 'allow' };
const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: {
    protocolVersion: LATEST_PROTOCOL_VERSION,
    capabilities: {},
    clientInfo: { name: 'raw', version: '1' },
  },
};

async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body,
  });
}

describe('HTTP endpoint security', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'p.json': POLICY },
      config: {
        servers: { toy: toyServer('p.json') },
        grants: [
          { id: 'a', owner: 'alice', token_sha256: sha('token-a') },
          { id: 'b', owner: 'bob', token_env: 'B_TOKEN' },
        ],
        http: { max_body_bytes: 4096 },
      },
      env: { B_TOKEN: 'token-b-0123456789abcdef' },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('refuses a missing or wrong bearer token with 401 and a JSON-RPC error', async () => {
    const attempts: Record<string, string>[] = [
      {},
      { authorization: 'Bearer nope' },
      { authorization: 'Basic dG9rZW4tYQ==' },
    ];
    for (const headers of attempts) {
      const res = await post(`${gateway.url}/mcp`, JSON.stringify(initialize), headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain('bearer token');
    }
    expect(gateway.services.metrics.authFailures).toBeDefined();
  });

  it('accepts tokens given by hash and by environment variable', async () => {
    const a = await connectClient(`${gateway.url}/mcp`, { token: 'token-a' });
    const b = await connectClient(`${gateway.url}/mcp`, { token: 'token-b-0123456789abcdef' });
    expect((await a.listTools()).tools.length).toBeGreaterThan(0);
    expect((await b.listTools()).tools.length).toBeGreaterThan(0);
    await a.close();
    await b.close();
  });

  it('answers a call that is ready at once as plain JSON, and streams (SSE) one that takes over a second', async () => {
    const auth = { authorization: 'Bearer token-a' };
    const opened = await post(`${gateway.url}/mcp`, JSON.stringify(initialize), auth);
    expect(opened.status).toBe(200);
    expect(opened.headers.get('content-type')).toBe('application/json');
    const session = opened.headers.get('mcp-session-id') ?? '';
    expect(((await opened.json()) as { result: { serverInfo: unknown } }).result.serverInfo).toBeDefined();
    const headers = { ...auth, 'mcp-session-id': session, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION };
    const initialized = await post(
      `${gateway.url}/mcp`,
      JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
      headers,
    );
    expect(initialized.status).toBe(202);
    const callTool = (id: number, name: string, args: Record<string, unknown>) =>
      post(
        `${gateway.url}/mcp`,
        JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } }),
        headers,
      );
    const quick = await callTool(2, 'count', {});
    expect(quick.headers.get('content-type')).toBe('application/json');
    expect(quick.headers.get('mcp-session-id')).toBe(session);
    const quickBody = (await quick.json()) as { id: number; result: { content: { text: string }[] } };
    expect(quickBody.id).toBe(2);
    expect(quickBody.result.content[0]?.text).toMatch(/^\d+$/);
    const slow = await callTool(3, 'sleep', { ms: 1500 });
    expect(slow.headers.get('content-type')).toBe('text/event-stream');
    const events = (await slow.text())
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => JSON.parse(line.slice(6)) as { id?: number; result?: { content: { text: string }[] } });
    expect(events.at(-1)?.id).toBe(3);
    expect(events.at(-1)?.result?.content[0]?.text).toBe('slept 1500');
  });

  it('answers malformed JSON with a parse error and a non-initialize first request with 400', async () => {
    const auth = { authorization: 'Bearer token-a' };
    const bad = await post(`${gateway.url}/mcp`, '{"jsonrpc": "2.0", "method": ', auth);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: number } }).error.code).toBe(-32700);
    const notInit = await post(
      `${gateway.url}/mcp`,
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      auth,
    );
    expect(notInit.status).toBe(400);
  });

  it('refuses an oversized body with 413 before parsing it', async () => {
    const huge = JSON.stringify({
      ...initialize,
      params: { ...initialize.params, padding: 'x'.repeat(10_000) },
    });
    const res = await post(`${gateway.url}/mcp`, huge, { authorization: 'Bearer token-a' });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain('4096 bytes');
  });

  it('refuses foreign Host and Origin headers (DNS rebinding)', async () => {
    const auth = { authorization: 'Bearer token-a' };
    const origin = await post(`${gateway.url}/mcp`, JSON.stringify(initialize), {
      ...auth,
      origin: 'https://evil.example',
    });
    expect(origin.status).toBe(403);
    const port = new URL(gateway.url).port;
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/mcp',
          method: 'POST',
          headers: { host: `evil.example:${port}`, ...auth, 'content-type': 'application/json' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify(initialize));
    });
    expect(status).toBe(403);
    const local = await post(`${gateway.url}/mcp`, JSON.stringify(initialize), {
      ...auth,
      origin: `http://localhost:${port}`,
    });
    expect(local.status).toBe(200);
  });

  it('binds a session to the grant that opened it', async () => {
    const init = await post(`${gateway.url}/mcp`, JSON.stringify(initialize), {
      authorization: 'Bearer token-a',
    });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    expect(sessionId).not.toBe('');
    await init.text();
    const hijack = await post(
      `${gateway.url}/mcp`,
      JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
      {
        authorization: 'Bearer token-b-0123456789abcdef',
        'mcp-session-id': sessionId,
        'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
      },
    );
    expect(hijack.status).toBe(404);
    const unknown = await post(
      `${gateway.url}/mcp`,
      JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
      {
        authorization: 'Bearer token-a',
        'mcp-session-id': 'no-such-session',
      },
    );
    expect(unknown.status).toBe(404);
  });

  it('answers an unknown server endpoint with 404', async () => {
    const res = await post(`${gateway.url}/mcp/nope`, JSON.stringify(initialize), {
      authorization: 'Bearer token-a',
    });
    expect(res.status).toBe(404);
  });

  it('does not tell a caller without a valid token which server names exist', async () => {
    for (const name of ['toy', 'nope']) {
      const res = await post(`${gateway.url}/mcp/${name}`, JSON.stringify(initialize));
      expect(res.status).toBe(401);
      expect(await res.text()).not.toContain(name);
    }
  });

  it('answers health and readiness with the status only (no versions, errors or counts)', async () => {
    const health = await fetch(`${gateway.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('{"status":"ok"}');
    const ready = await fetch(`${gateway.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('{"status":"ready"}');
  });

  it('keeps /metrics off on a gateway with grants and no metrics token, saying how to turn it on', async () => {
    const res = await fetch(`${gateway.url}/metrics`, { headers: { authorization: 'Bearer token-a' } });
    expect(res.status).toBe(404);
    const body = await res.text();
    expect(body).toContain('COUNTERSIGN_METRICS_TOKEN');
    expect(body).not.toContain('countersign_');
  });
});

/** One request with any headers (Host included, which fetch cannot set) from a chosen loopback address. */
function raw(
  url: string,
  options: { path: string; headers?: Record<string, string>; localAddress?: string },
): Promise<{ status: number; body: string; retryAfter?: string }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: options.path,
        method: 'GET',
        localAddress: options.localAddress ?? '127.0.0.1',
        headers: options.headers ?? {},
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, retryAfter: res.headers['retry-after'] }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('/metrics behind COUNTERSIGN_METRICS_TOKEN', () => {
  const METRICS = 'the-metrics-token-0123456789';
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'p.json': POLICY },
      config: {
        servers: { toy: toyServer('p.json') },
        grants: [{ id: 'a', owner: 'alice', token_sha256: sha('token-a') }],
        http: { auth_failures: { max: 3, window_seconds: 3600 } },
      },
      env: { COUNTERSIGN_METRICS_TOKEN: METRICS },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('serves the metrics token only: none, a wrong one or a grant token get 401', async () => {
    const none = await raw(gateway.url, { path: '/metrics', localAddress: '127.0.0.30' });
    expect(none.status).toBe(401);
    expect(none.body).toContain('COUNTERSIGN_METRICS_TOKEN');
    for (const token of ['wrong-metrics-token-0123', 'token-a'])
      expect(
        (
          await raw(gateway.url, {
            path: '/metrics',
            headers: { authorization: `Bearer ${token}` },
            localAddress: '127.0.0.31',
          })
        ).status,
      ).toBe(401);
    const right = await raw(gateway.url, {
      path: '/metrics',
      headers: { authorization: `Bearer ${METRICS}` },
      localAddress: '127.0.0.31',
    });
    expect(right.status).toBe(200);
    expect(right.body).toMatch(/countersign_auth_failures_total \d+/);
  });

  it('refuses a foreign Host or Origin (DNS rebinding) even with the right token', async () => {
    const { port } = new URL(gateway.url);
    const auth = { authorization: `Bearer ${METRICS}` };
    const host = await raw(gateway.url, {
      path: '/metrics',
      headers: { ...auth, host: `evil.example:${port}` },
    });
    expect(host.status).toBe(403);
    expect(host.body).not.toContain('countersign_');
    const origin = await raw(gateway.url, {
      path: '/metrics',
      headers: { ...auth, origin: 'https://evil.example' },
    });
    expect(origin.status).toBe(403);
    expect(origin.body).not.toContain('countersign_');
  });

  it('counts wrong metrics tokens towards the same lockout as /mcp, and still serves the right token', async () => {
    const from = '127.0.0.32';
    const wrong = (n: number) =>
      raw(gateway.url, {
        path: '/metrics',
        headers: { authorization: `Bearer guess-${n}` },
        localAddress: from,
      });
    expect([(await wrong(0)).status, (await wrong(1)).status, (await wrong(2)).status]).toEqual([
      401, 401, 401,
    ]);
    const locked = await wrong(3);
    expect(locked.status).toBe(429);
    expect(Number(locked.retryAfter)).toBeGreaterThan(0);
    const mcp = await fetch(`${gateway.url}/mcp`, {
      method: 'GET',
      headers: { authorization: 'Bearer guess-mcp' },
    });
    // fetch sends from 127.0.0.1, another address: a plain 401 there...
    expect(mcp.status).toBe(401);
    // ...while from the locked-out address a wrong /mcp token is refused with 429.
    const { port } = new URL(gateway.url);
    const mcpFrom = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/mcp',
          method: 'GET',
          localAddress: from,
          headers: { authorization: 'Bearer guess-mcp' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(mcpFrom).toBe(429);
    const right = await raw(gateway.url, {
      path: '/metrics',
      headers: { authorization: `Bearer ${METRICS}` },
      localAddress: from,
    });
    expect(right.status).toBe(200);
  });
});

describe('/metrics on the embedded default (no grants, loopback only)', () => {
  it('is served without a token, since /mcp is too, and still refuses a foreign Host', async () => {
    const gateway = await startTestGateway({
      policies: { 'p.json': POLICY },
      config: { servers: { toy: toyServer('p.json') } },
    });
    try {
      const open = await raw(gateway.url, { path: '/metrics' });
      expect(open.status).toBe(200);
      expect(open.body).toContain('countersign_auth_failures_total');
      const { port } = new URL(gateway.url);
      expect(
        (await raw(gateway.url, { path: '/metrics', headers: { host: `evil.example:${port}` } })).status,
      ).toBe(403);
    } finally {
      await gateway.stop();
    }
  });
});

describe('config validation', () => {
  it('refuses a non-loopback listen address without grants', () => {
    expect(() =>
      parseConfig(
        JSON.stringify({ listen: { host: '0.0.0.0', port: 1 }, servers: { s: { command: 'x' } } }),
        'c.json',
        {},
      ),
    ).toThrow(
      /c\.json: \/listen\/host: refusing to listen on non-loopback address 0\.0\.0\.0 without grants/,
    );
  });

  it('names the path and what was expected for every problem', () => {
    let message = '';
    try {
      parseConfig(
        JSON.stringify({
          servers: { bad__name: { command: 'x' }, ok: { url: 'ftp://x' } },
          grants: [{ id: 'g', owner: 'o' }],
          listen: { port: 'eighty' },
        }),
        'c.json',
        {},
      );
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('c.json: /listen/port');
    expect(message).toContain('/servers/bad__name');
    expect(message).toContain('/grants/0');
    expect(message).toContain('exactly one of token_sha256 or token_env');
  });

  it('reports a token_env that is not set', () => {
    expect(() =>
      parseConfig(
        JSON.stringify({
          servers: { s: { command: 'x' } },
          grants: [{ id: 'g', owner: 'o', token_env: 'NOPE' }],
        }),
        'c.json',
        {},
      ),
    ).toThrow(/\/grants\/0\/token_env: environment variable NOPE is not set/);
  });

  it('refuses a token_env token shorter than 16 characters (its length is all that keeps guessing infeasible)', () => {
    const parse = (token: string) =>
      parseConfig(
        JSON.stringify({
          servers: { s: { command: 'x' } },
          grants: [{ id: 'g', owner: 'o', token_env: 'TOKEN' }],
        }),
        'c.json',
        { TOKEN: token },
      );
    expect(() => parse('short-token')).toThrow(
      /\/grants\/0\/token_env: the token in TOKEN is 11 characters; at least 16 are required/,
    );
    expect(parse('x'.repeat(16)).grants[0]?.id).toBe('g');
  });
});
