import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../src/audit/log.js';
import { parseConfig } from '../src/config/load.js';
import { startGateway } from '../src/gateway/gateway.js';
import { silentLogger } from '../src/log/logger.js';
import { createRedis, waitReady } from '../src/redis/client.js';
import { startEmbeddedRedis } from '../src/redis/embedded.js';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
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

const sha = (token: string): string => createHash('sha256').update(token).digest('hex');

/** A gateway in front of the toy server that allows every call, with two grants: "right-token" and "second-token". */
function allowAll(http: Record<string, unknown>) {
  return {
    policies: { 'p.json': { version: '1', default: 'allow' } },
    config: {
      servers: { toy: toyServer('p.json') },
      grants: [
        { id: 'a', owner: 'alice', token_sha256: sha('right-token') },
        { id: 'b', owner: 'bob', token_sha256: sha('second-token') },
      ],
      http,
    },
  };
}

async function authEvents(prefix: string, reason: string): Promise<{ message?: string | null }[]> {
  const redis = await connectTestRedis();
  const events = await new AuditLog({ redis, prefix }).query({ type: 'auth' });
  redis.disconnect();
  return events.filter((e) => e.reason === reason);
}

const statuses = (answers: { status: number }[]): Record<number, number> => {
  const counted: Record<number, number> = {};
  for (const { status } of answers) counted[status] = (counted[status] ?? 0) + 1;
  return counted;
};

describe('wrong-token lockouts never refuse a valid token', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway(allowAll({ auth_failures: { max: 3, window_seconds: 3600 } }));
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('a flood of wrong tokens from one address gets 429, while correct tokens from that address are served; audited once', async () => {
    const flood = await Promise.all(
      Array.from({ length: 40 }, (_, i) => post(gateway.url, `guess-${i}`, '127.0.0.1')),
    );
    expect(statuses(flood)).toEqual({ 401: 3, 429: 37 });
    const later = await post(gateway.url, 'guess-40', '127.0.0.1');
    expect(later.status).toBe(429);
    expect(Number(later.retryAfter)).toBeGreaterThan(0);

    // Both grants' correct tokens, from the very address that is locked out, are served...
    expect((await post(gateway.url, 'right-token', '127.0.0.1')).status).toBe(200);
    expect((await post(gateway.url, 'second-token', '127.0.0.1')).status).toBe(200);
    // ...through a whole session with the SDK's client, too (every request is authenticated again).
    const client = await connectClient(`${gateway.url}/mcp`, { token: 'second-token' });
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    await client.close();
    // The lockout still stands for wrong tokens.
    expect((await post(gateway.url, 'guess-41', '127.0.0.1')).status).toBe(429);

    const lockouts = await authEvents(gateway.prefix, 'auth_locked_out');
    expect(lockouts).toHaveLength(1);
    expect(lockouts[0]?.message).toContain('127.0.0.1');
  });

  it('one wrong token repeated from many addresses is throttled by its fingerprint, other tokens are not', async () => {
    const addresses = ['127.0.0.10', '127.0.0.11', '127.0.0.12', '127.0.0.13', '127.0.0.14'];
    const answers = [];
    for (const address of addresses) answers.push((await post(gateway.url, 'stale-token', address)).status);
    // No address sent more than one wrong token: only the token's own count can refuse it.
    expect(answers).toEqual([401, 401, 401, 429, 429]);
    expect((await post(gateway.url, 'stale-token', '127.0.0.15')).status).toBe(429);
    expect((await post(gateway.url, 'another-wrong-token', '127.0.0.15')).status).toBe(401);
    expect((await post(gateway.url, 'right-token', '127.0.0.13')).status).toBe(200);

    const lockouts = await authEvents(gateway.prefix, 'auth_token_locked_out');
    expect(lockouts).toHaveLength(1);
    expect(lockouts[0]?.message).toContain(sha('stale-token').slice(0, 16));
  });

  it('a request without any token is refused 401 and counts towards no lockout', async () => {
    const { port } = new URL(gateway.url);
    const bare = (): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: '/mcp',
            method: 'POST',
            localAddress: '127.0.0.20',
            headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end(initialize);
      });
    for (let i = 0; i < 5; i++) expect(await bare()).toBe(401);
    // The address has guessed nothing yet: its first wrong token is a plain 401.
    expect((await post(gateway.url, 'first-guess', '127.0.0.20')).status).toBe(401);
  });
});

describe('the global ceiling on wrong tokens', () => {
  it('slows every wrong token from every address once reached, never a valid one', async () => {
    const gateway = await startTestGateway(
      allowAll({ auth_failures: { max: 100, window_seconds: 3600, global_max: 5 } }),
    );
    try {
      const answers = [];
      // A distributed guess: a new address and a new token each time, so neither per-address nor per-token limits bite.
      for (let i = 0; i < 8; i++)
        answers.push((await post(gateway.url, `guess-${i}`, `127.0.1.${i + 1}`)).status);
      expect(answers).toEqual([401, 401, 401, 401, 401, 429, 429, 429]);
      expect((await post(gateway.url, 'right-token', '127.0.1.9')).status).toBe(200);
      expect((await post(gateway.url, 'second-token', '127.0.1.1')).status).toBe(200);
      expect(await authEvents(gateway.prefix, 'auth_global_ceiling')).toHaveLength(1);
    } finally {
      await gateway.stop();
    }
  });
});

describe('wrong-token lockouts spread over two replicas', () => {
  it('counts wrong tokens in the shared Redis: guesses spread over two gateways are locked out together, valid tokens served by both; audited once', async () => {
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
      expect((await post(first.url, 'guess-4', address)).status).toBe(429);
      expect((await post(second.url, 'right-token', address)).status).toBe(200);
      expect((await post(first.url, 'right-token', address)).status).toBe(200);
      expect((await post(first.url, 'second-token', address)).status).toBe(200);

      const lockouts = await authEvents(first.prefix, 'auth_locked_out');
      expect(lockouts.filter((e) => e.message?.includes(address))).toHaveLength(1);
    } finally {
      await second.stop();
      await first.stop();
    }
  });
});

describe('wrong-token lockouts behind a trusted reverse proxy', () => {
  it('locks out the forwarded client address, not the proxy, and still serves its valid token', async () => {
    const gateway = await startTestGateway(
      allowAll({ auth_failures: { max: 2, window_seconds: 3600 }, trusted_proxies: ['127.0.0.1'] }),
    );
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
    try {
      expect([
        await send('x', '198.51.100.7'),
        await send('y', '198.51.100.7'),
        await send('z', '198.51.100.7'),
      ]).toEqual([401, 401, 429]);
      expect(await send('w', '198.51.100.8')).toBe(401);
      expect(await send('right-token', '198.51.100.7')).toBe(200);
    } finally {
      await gateway.stop();
    }
  });
});

/** GETs the approvals API from a chosen loopback source address; resolves with the status. */
const getApprovals = async (url: string, token: string, localAddress: string): Promise<number> =>
  (await sendFrom(url, localAddress, { method: 'GET', path: '/api/approvals', token })).status;

describe('admin-token lockouts on the approvals API', () => {
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

  it('refuses an address guessing the admin token with 429 (on the API and /mcp alike), still serves the admin token and grant tokens from it, and audits once', async () => {
    expect(await getApprovals(gateway.url, ADMIN, '127.0.0.3')).toBe(200);
    const flood = await Promise.all(
      Array.from({ length: 20 }, (_, i) => getApprovals(gateway.url, `guess-${i}-0123456789`, '127.0.0.3')),
    );
    expect(statuses(flood.map((status) => ({ status })))).toEqual({ 401: 3, 429: 17 });
    expect(await getApprovals(gateway.url, ADMIN, '127.0.0.3')).toBe(200);
    // One lockout for the address: wrong grant tokens on /mcp are refused too, right ones served.
    expect((await post(gateway.url, 'guess-mcp', '127.0.0.3')).status).toBe(429);
    expect((await post(gateway.url, 'right-token', '127.0.0.3')).status).toBe(200);
    expect(await getApprovals(gateway.url, 'guess-x-0123456789', '127.0.0.4')).toBe(401);

    const lockouts = await authEvents(gateway.prefix, 'auth_locked_out');
    expect(lockouts.filter((e) => e.message?.includes('127.0.0.3'))).toHaveLength(1);
  });
});

/** How many clients are connected to a Redis server, not counting the one asking. */
async function connectionCount(url: string): Promise<number> {
  const probe = createRedis(url, 'probe');
  try {
    await waitReady(probe, 5000);
    const list = (await probe.client('LIST')) as string;
    return list.trim().split('\n').length - 1;
  } finally {
    probe.disconnect();
  }
}

async function untilConnections(url: string, count: number): Promise<void> {
  for (let i = 0; i < 200 && (await connectionCount(url)) < count; i++)
    await new Promise((resolve) => setTimeout(resolve, 50));
}

describe('wrong tokens while Redis is unreachable', () => {
  it('still refuses a wrong token (401), counts it in the process (429 past the limit), and serves a valid one', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-throttle-down-'));
    let redis = await startEmbeddedRedis({ dir: path.join(dir, 'redis'), reuse: false });
    const port = Number(new URL(redis.url).port);
    let redisUp = true;
    await writeFile(path.join(dir, 'p.json'), JSON.stringify({ version: '1', default: 'allow' }));
    const config = parseConfig(
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        servers: { toy: toyServer('p.json') },
        grants: [{ id: 'a', owner: 'alice', token_sha256: sha('right-token') }],
        http: { auth_failures: { max: 3, window_seconds: 3600 } },
        data_dir: path.join(dir, 'state'),
      }),
      path.join(dir, 'countersign.json'),
      {},
    );
    const gateway = await startGateway({ config, redisUrl: redis.url, logger: silentLogger() });
    const connections = await connectionCount(redis.url);
    try {
      await redis.stop();
      redisUp = false;
      const answers = [];
      for (let i = 0; i < 5; i++) answers.push((await post(gateway.url, `guess-${i}`, '127.0.0.7')).status);
      expect(answers).toEqual([401, 401, 401, 429, 429]);
      expect((await post(gateway.url, 'right-token', '127.0.0.7')).status).toBe(200);
      const ready = await fetch(`${gateway.url}/readyz`);
      expect(ready.status).toBe(503);
      // Why it is not ready (the Redis error) goes to the log, not to whoever asks.
      expect(await ready.text()).toBe('{"status":"not ready"}');
    } finally {
      // The gateway closes its queues cleanly only with Redis back.
      if (!redisUp) redis = await startEmbeddedRedis({ dir: path.join(dir, 'redis'), reuse: false, port });
      // ...and with every one of its connections (BullMQ's too) reconnected.
      await untilConnections(redis.url, connections);
      await gateway.close();
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
