import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../src/audit/log.js';
import { startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { connectTestRedis } from './support/redis.js';

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

/** Sends one request from a chosen loopback source address (each address has its own failure count). */
function sendFrom(
  url: string,
  localAddress: string,
  call: { method: 'GET' | 'POST'; path: string; token: string; body?: string },
): Promise<{ status: number; retryAfter?: string }> {
  const { port } = new URL(url);
  const headers: Record<string, string> = { authorization: `Bearer ${call.token}` };
  if (call.body !== undefined) {
    headers['content-type'] = 'application/json';
    headers.accept = 'application/json, text/event-stream';
  }
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: call.path, method: call.method, localAddress, headers },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] });
      },
    );
    req.on('error', reject);
    req.end(call.body);
  });
}

/** POSTs an initialize to /mcp from a chosen loopback source address. */
const post = (url: string, token: string, localAddress: string) =>
  sendFrom(url, localAddress, { method: 'POST', path: '/mcp', token, body: initialize });

/** A gateway in front of the toy server that allows every call, with one grant whose token is "right-token". */
function allowAll(http: Record<string, unknown>) {
  return {
    policies: { 'p.json': { version: '1', default: 'allow' } },
    config: {
      servers: { toy: toyServer('p.json') },
      grants: [
        { id: 'a', owner: 'alice', token_sha256: createHash('sha256').update('right-token').digest('hex') },
      ],
      http,
    },
  };
}

describe('bearer-token brute force', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway({
      ...allowAll({ auth_failures: { max: 3, window_seconds: 3600 } }),
    });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('locks out an address after too many wrong tokens, even for the right token, and audits it once', async () => {
    for (let i = 0; i < 3; i++) expect((await post(gateway.url, `guess-${i}`, '127.0.0.1')).status).toBe(401);
    const fourth = await post(gateway.url, 'guess-3', '127.0.0.1');
    expect(fourth.status).toBe(429);
    expect(Number(fourth.retryAfter)).toBeGreaterThan(0);
    expect((await post(gateway.url, 'guess-4', '127.0.0.1')).status).toBe(429);
    expect((await post(gateway.url, 'right-token', '127.0.0.1')).status).toBe(429);
    // Another client address is not affected.
    expect((await post(gateway.url, 'right-token', '127.0.0.2')).status).toBe(200);

    const redis = await connectTestRedis();
    const events = await new AuditLog({ redis, prefix: gateway.prefix }).query({ type: 'auth' });
    redis.disconnect();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ decision: 'deny', reason: 'auth_locked_out' });
    expect(events[0]?.message).toContain('127.0.0.1');
  });
});

describe('bearer-token brute force spread over two replicas', () => {
  it('counts wrong tokens in the shared Redis: guesses spread over two gateways are locked out together, and audited once', async () => {
    const options = allowAll({ auth_failures: { max: 3, window_seconds: 3600 } });
    const first = await startTestGateway(options);
    // The second replica shares the first one's Redis keys, as replicas behind one load balancer do.
    const second = await startTestGateway({
      ...options,
      config: { ...options.config, redis: { prefix: first.prefix } },
    });
    try {
      const address = '127.0.0.5';
      expect((await post(first.url, 'guess-0', address)).status).toBe(401);
      expect((await post(second.url, 'guess-1', address)).status).toBe(401);
      expect((await post(first.url, 'guess-2', address)).status).toBe(401);
      // The second replica has seen two wrong tokens from this address, the two together four: locked out.
      const fourth = await post(second.url, 'guess-3', address);
      expect(fourth.status).toBe(429);
      expect(Number(fourth.retryAfter)).toBeGreaterThan(0);
      expect((await post(second.url, 'right-token', address)).status).toBe(429);
      expect((await post(first.url, 'guess-4', address)).status).toBe(429);
      expect((await post(first.url, 'right-token', address)).status).toBe(429);
      expect((await post(first.url, 'right-token', '127.0.0.6')).status).toBe(200);

      const redis = await connectTestRedis();
      const events = await new AuditLog({ redis, prefix: first.prefix }).query({ type: 'auth' });
      redis.disconnect();
      expect(
        events.filter((e) => e.reason === 'auth_locked_out' && e.message?.includes(address)),
      ).toHaveLength(1);
    } finally {
      await second.stop();
      await first.stop();
    }
  });
});

describe('bearer-token brute force behind a trusted reverse proxy', () => {
  it('locks out the forwarded client address, not the proxy', async () => {
    const gateway = await startTestGateway({
      ...allowAll({ auth_failures: { max: 2, window_seconds: 3600 }, trusted_proxies: ['127.0.0.1'] }),
    });
    const send = (token: string, client: string) =>
      fetch(`${gateway.url}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'x-forwarded-for': client,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: initialize,
      }).then(async (res) => {
        await res.text();
        return res.status;
      });
    expect([
      await send('x', '198.51.100.7'),
      await send('y', '198.51.100.7'),
      await send('z', '198.51.100.7'),
    ]).toEqual([401, 401, 429]);
    expect(await send('right-token', '198.51.100.7')).toBe(429);
    expect(await send('right-token', '198.51.100.8')).toBe(200);
    await gateway.stop();
  });
});

/** GETs the approvals API from a chosen loopback source address; resolves with the status. */
const getApprovals = async (url: string, token: string, localAddress: string): Promise<number> =>
  (await sendFrom(url, localAddress, { method: 'GET', path: '/api/approvals', token })).status;

describe('admin-token brute force on the approvals API', () => {
  const ADMIN = 'the-right-admin-token-0123456789';
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway({
      ...allowAll({ auth_failures: { max: 3, window_seconds: 3600 } }),
      env: { COUNTERSIGN_ADMIN_TOKEN: ADMIN },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('locks out an address guessing the admin token, on the API and on /mcp alike, and audits it', async () => {
    expect(await getApprovals(gateway.url, ADMIN, '127.0.0.3')).toBe(200);
    for (let i = 0; i < 3; i++)
      expect(await getApprovals(gateway.url, `guess-${i}-0123456789`, '127.0.0.3')).toBe(401);
    expect(await getApprovals(gateway.url, `guess-3-0123456789`, '127.0.0.3')).toBe(429);
    expect(await getApprovals(gateway.url, ADMIN, '127.0.0.3')).toBe(429); // even the right token, for now
    expect((await post(gateway.url, 'right-token', '127.0.0.3')).status).toBe(429); // one lockout for the address
    expect(await getApprovals(gateway.url, ADMIN, '127.0.0.4')).toBe(200);

    const redis = await connectTestRedis();
    const events = await new AuditLog({ redis, prefix: gateway.prefix }).query({ type: 'auth' });
    redis.disconnect();
    expect(
      events.filter((e) => e.reason === 'auth_locked_out' && e.message?.includes('127.0.0.3')),
    ).toHaveLength(1);
  });
});
