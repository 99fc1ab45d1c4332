/**
 * Human approval under load, against one `countersign serve` child process (so its memory is its own):
 *   1. time to resume: a call is parked (wait "hold"), approved through the approvals API, and the time from
 *      the decision being recorded (the approval record's decidedAt) to the approved call starting upstream
 *      (its `result` audit event's time minus its durationMs) is taken from the gateway's own records, in
 *      whole milliseconds. One call at a time, so it measures the path, not a queue.
 *   2. scale: 1,000 calls parked at once (held open over 10 MCP sessions, 100 each): time to park them, the
 *      gateway's RSS and Redis used_memory before and after; then all approved at once: time to drain.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Redis } from 'ioredis';
import { ApprovalStore } from '../src/approvals/store.js';
import { AuditLog } from '../src/audit/log.js';
import { benchFetch } from './load.js';
import { startServe } from './precision.js';
import type { ServeProcess } from './precision.js';
import { summarize } from './stats.js';
import { EVERYTHING_ENTRY } from './upstream.js';

export const APPROVAL_POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    echo: {
      action: 'require_approval',
      approval: { reviewers: ['bench-reviewer'], wait: 'hold', timeout: '10m', max_pending: 100_000 },
    },
  },
} as const;

const RESUME_CALLS = 100;
const SESSIONS = 10;
const PARKED = 1000;
const ADMIN_TOKEN = randomBytes(24).toString('hex');

export interface ApprovalsResult {
  resume: {
    calls: number;
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    resolution: string;
    goalP99Ms: number;
    pass: boolean;
  };
  scale: {
    parked: number;
    sessions: number;
    parkSeconds: number;
    gatewayRssMbBefore: number;
    gatewayRssMbParked: number;
    redisMbBefore: number;
    redisMbParked: number;
    drainSeconds: number;
    allResolved: boolean;
  };
}

export async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 'NaN');
  return kb / 1024;
}

export async function redisMb(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 'NaN') / (1024 * 1024);
}

async function api(base: string, route: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}/api${route}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`${route}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function pendingIds(base: string): Promise<string[]> {
  const json = await api(base, `/approvals?status=pending&limit=${PARKED}`);
  return (json.approvals as { id: string }[]).map((a) => a.id);
}

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`bench approvals: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function hold(client: Client, message: string): Promise<unknown> {
  return client.callTool({ name: 'echo', arguments: { message } }, undefined, { timeout: 600_000 });
}

export async function runApprovals(options: { dir: string; redisUrl: string }): Promise<ApprovalsResult> {
  const dir = path.join(options.dir, 'approvals');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'approval-policy.json'), JSON.stringify(APPROVAL_POLICY, null, 2));
  const prefix = `benchappr:${randomBytes(6).toString('hex')}:`;
  const configFile = path.join(dir, 'gateway.json');
  await writeFile(
    configFile,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      redis: { url: options.redisUrl, prefix },
      servers: {
        everything: {
          command: process.execPath,
          args: [EVERYTHING_ENTRY, 'stdio'],
          policy: 'approval-policy.json',
        },
      },
      data_dir: path.join(dir, 'data'),
    }),
  );
  const redis = new Redis(options.redisUrl, { lazyConnect: false });
  let serve: ServeProcess | undefined;
  const sessions: { client: Client; transport: StreamableHTTPClientTransport }[] = [];
  try {
    serve = await startServe(configFile, 30_000, { COUNTERSIGN_ADMIN_TOKEN: ADMIN_TOKEN });
    const base = serve.url.replace(/\/mcp$/, '');
    for (let i = 0; i < SESSIONS; i++) {
      const client = new Client({ name: `approvals-${i}`, version: '1.0.0' }, { capabilities: {} });
      const transport = new StreamableHTTPClientTransport(new URL(`${serve.url}/everything`), {
        fetch: benchFetch,
      });
      await client.connect(transport);
      sessions.push({ client, transport });
    }
    const first = sessions[0];
    if (!first) throw new Error('no session');

    // 1. Time to resume, one call at a time.
    const store = new ApprovalStore(redis, prefix);
    for (let i = 0; i < RESUME_CALLS; i++) {
      const answered = hold(first.client, `resume-${i}`);
      const [id] = await waitFor(
        async () => {
          const ids = await pendingIds(base);
          return ids.length ? ids : undefined;
        },
        10_000,
        'a parked call',
      );
      await api(base, `/approvals/${String(id)}/approve`, { reviewer: 'bench-reviewer' });
      await answered;
    }
    const audit = new AuditLog({ redis, prefix });
    // The result event is written when the upstream call ends: its time minus its duration is when it started.
    const results = (await audit.query({ type: 'result', limit: 100_000 })).filter(
      (e) => e.reason === 'approved' && e.approvalId,
    );
    const delays: number[] = [];
    for (const event of results) {
      const record = await store.get(event.approvalId ?? '');
      if (record?.decidedAt)
        delays.push(Math.max(0, Date.parse(event.time) - (event.durationMs ?? 0) - record.decidedAt));
    }
    const resumeStats = summarize([delays]);

    // 2. 1,000 parked at once.
    const rssBefore = await rssMb(serve.pid);
    const redisBefore = await redisMb(redis);
    const parkStarted = performance.now();
    const held = Array.from({ length: PARKED }, (_, i) => {
      const session = sessions[i % sessions.length];
      if (!session) throw new Error('no session');
      return hold(session.client, `parked-${i}`).then(
        () => true,
        () => false,
      );
    });
    const ids = await waitFor(
      async () => {
        const pending = await pendingIds(base);
        return pending.length >= PARKED ? pending : undefined;
      },
      120_000,
      `${PARKED} parked calls`,
    );
    const parkSeconds = (performance.now() - parkStarted) / 1000;
    const rssParked = await rssMb(serve.pid);
    const redisParked = await redisMb(redis);

    const drainStarted = performance.now();
    const queue = [...ids];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
          await api(base, `/approvals/${id}/approve`, { reviewer: 'bench-reviewer' });
        }
      }),
    );
    const resolved = await Promise.all(held);
    const drainSeconds = (performance.now() - drainStarted) / 1000;

    return {
      resume: {
        calls: delays.length,
        p50Ms: resumeStats.p50,
        p99Ms: resumeStats.p99,
        maxMs: resumeStats.max,
        resolution: '1 ms (decidedAt and audit times are whole milliseconds)',
        goalP99Ms: 20,
        pass: resumeStats.p99 < 20,
      },
      scale: {
        parked: PARKED,
        sessions: SESSIONS,
        parkSeconds,
        gatewayRssMbBefore: rssBefore,
        gatewayRssMbParked: rssParked,
        redisMbBefore: redisBefore,
        redisMbParked: redisParked,
        drainSeconds,
        allResolved: resolved.every(Boolean),
      },
    };
  } finally {
    await Promise.all(
      sessions.map(async ({ client, transport }) => {
        await transport.terminateSession().catch(() => undefined);
        await client.close().catch(() => undefined);
      }),
    );
    await serve?.stop().catch(() => undefined);
    redis.disconnect();
  }
}
