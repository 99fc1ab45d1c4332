/**
 * `npm run bench`, third part: parked calls at scale, against two `countersign serve` processes run from the
 * build (`dist/`, as deployed) that share one private redis-server.
 *
 *   held   — BENCH_HELD (10,000) `echo` calls held open (`wait: "hold"`) over 10 MCP sessions, half on each
 *            process: time until all are parked, RSS of each process 2 s after and again 30 s after (the
 *            parking burst's garbage collected by then), Redis used_memory. Then all are approved
 *            through the approvals API (requests spread over both processes): time until every held call has
 *            its answer, and the executions per 1-second window (from when each call's limit units were taken,
 *            `admittedAt`) against the tool's global limit, `PACE_HELD` per second.
 *   parked — BENCH_PARKED (100,000) `get-sum` calls parked as MCP tasks, after which their sessions end (no
 *            connection is left): time to park, Redis memory per parked call, RSS of each process. Then all are
 *            approved through the API: the background runners execute them, paced by `PACE_PARKED` per second;
 *            time until every one has run, and the executions per window.
 *
 * Prints a table and writes bench/results/latest-scale.json. Exit code 1 when a held call got no result, an
 * approved call has no `ok` outcome, a limiter window admitted more than its limit, or a drain finished faster
 * than the limit allows; the memory goals (150 MB per process for 10,000 held, 200 MB of Redis for
 * 100,000 parked) are informational.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateTaskResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { Redis } from 'ioredis';
import { startEmbeddedRedis } from '../src/redis/embedded.js';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { redisMb, rssMb } from './approvals.js';
import { benchFetch } from './load.js';
import { startServe } from './precision.js';
import type { ServeProcess } from './precision.js';
import { envNumber, gatewayNodeFlags, machineInfo } from './system.js';
import { EVERYTHING_ENTRY, REPO_ROOT } from './upstream.js';

const HELD = Math.floor(envNumber('BENCH_HELD', 10_000));
const PARKED = Math.floor(envNumber('BENCH_PARKED', 100_000));
const HELD_SESSIONS = 10;
const HELD_WAVE = 500;
const PARK_SESSIONS = 20;
const PARK_IN_FLIGHT = 400;
const APPROVERS = 48;
const PACE_HELD = 300;
const PACE_PARKED = 400;
const ADMIN_TOKEN = randomBytes(24).toString('hex');
const REVIEWER = 'bench-reviewer';
const RESULTS_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results', 'latest-scale.json');
const WATCHDOG_MS = 20 * 60_000;
/** How long the held calls are held before the second RSS sample. */
const SETTLE_MS = 30_000;

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    echo: {
      action: 'require_approval',
      approval: { reviewers: [REVIEWER], wait: 'hold', timeout: '1h', max_pending: 1_000_000 },
      limits: [{ counter: 'scale_held', window: 'second', max: PACE_HELD, scope: 'global' }],
    },
    'get-sum': {
      action: 'require_approval',
      approval: { reviewers: [REVIEWER], wait: 'return', timeout: '1h', max_pending: 1_000_000 },
      limits: [{ counter: 'scale_parked', window: 'second', max: PACE_PARKED, scope: 'global' }],
    },
  },
};

interface Pacing {
  limitPerSecond: number;
  windows: number;
  maxInOneWindow: number;
  withinLimit: boolean;
}

export interface ScaleResult {
  startedAt: string;
  machine: ReturnType<typeof machineInfo>;
  gateways: number;
  /** BENCH_GATEWAY_NODE_FLAGS: Node/V8 flags the gateway processes ran with ('' for none). */
  gatewayNodeFlags: string;
  held: {
    calls: number;
    sessions: number;
    parkSeconds: number;
    rssMbBefore: number[];
    rssMbHeld: number[];
    /** RSS after the calls have been held for SETTLE_MS more (the parking burst's garbage collected). */
    rssMbSettled: number[];
    redisMbBefore: number;
    redisMbHeld: number;
    drainSeconds: number;
    answered: number;
    executed: number;
    pacing: Pacing;
    goalRssMbPerProcess: number;
  };
  parked: {
    calls: number;
    asTasks: boolean;
    parkSeconds: number;
    redisMbBefore: number;
    redisMbParked: number;
    redisBytesPerCall: number;
    rssMbParked: number[];
    approveSeconds: number;
    drainSeconds: number;
    executed: number;
    pacing: Pacing;
    goalRedisMb: number;
  };
  pass: boolean;
  failures: string[];
}

async function until(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`bench scale: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function connect(
  url: string,
  name: string,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name, version: '1.0.0' }, { capabilities: {} });
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: benchFetch });
  await client.connect(transport);
  return { client, transport };
}

/** Approves every id through the approvals API, `APPROVERS` requests at a time, alternating gateways. */
async function approveAll(gateways: ServeProcess[], ids: string[]): Promise<void> {
  const queue = [...ids];
  let next = 0;
  await Promise.all(
    Array.from({ length: APPROVERS }, async () => {
      for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
        const gateway = gateways[next++ % gateways.length];
        if (!gateway) throw new Error('no gateway');
        const base = gateway.url.replace(/\/mcp$/, '');
        const res = await fetch(`${base}/api/approvals/${id}/approve`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ reviewer: REVIEWER }),
        });
        if (res.status !== 200) throw new Error(`approve ${id}: HTTP ${res.status} ${await res.text()}`);
      }
    }),
  );
}

/** Executions per 1-second window, from when each approved call's limit units were taken (`admittedAt`). */
async function pacing(
  redis: Redis,
  prefix: string,
  ids: string[],
  limit: number,
): Promise<{ pacing: Pacing; executed: number }> {
  const counts = new Map<number, number>();
  let executed = 0;
  for (let i = 0; i < ids.length; i += 5000) {
    const pipeline = redis.pipeline();
    // admittedAt: when the call's limit units were taken (the limiter's own clock and window); outcome: how
    // its one execution ended.
    for (const id of ids.slice(i, i + 5000))
      pipeline.hmget(`${prefix}approval:${id}`, 'admittedAt', 'outcome');
    for (const [, value] of (await pipeline.exec()) ?? []) {
      const [admitted, outcome] = (value ?? []) as (string | null)[];
      const at = Number(admitted);
      if (outcome !== 'ok' || !Number.isFinite(at) || at <= 0) continue;
      executed += 1;
      const window = Math.floor(at / 1000);
      counts.set(window, (counts.get(window) ?? 0) + 1);
    }
  }
  const maxInOneWindow = Math.max(0, ...counts.values());
  return {
    executed,
    pacing: {
      limitPerSecond: limit,
      windows: counts.size,
      maxInOneWindow,
      withinLimit: maxInOneWindow <= limit,
    },
  };
}

async function pendingIds(redis: Redis, prefix: string): Promise<string[]> {
  return redis.zrange(`${prefix}approvals:pending`, '0', '-1');
}

async function main(state: {
  dir?: string;
  redis?: EmbeddedRedis;
  gateways: ServeProcess[];
}): Promise<ScaleResult> {
  const started = new Date();
  state.dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-bench-scale-'));
  const dir = state.dir;
  state.redis = await startEmbeddedRedis({ dir: path.join(dir, 'redis'), reuse: false });
  const redis = new Redis(state.redis.url);
  const prefix = 'scale:';
  await writeFile(path.join(dir, 'policy.json'), JSON.stringify(POLICY, null, 2));
  for (let g = 0; g < 2; g++) {
    await mkdir(path.join(dir, `data-${g}`), { recursive: true });
    await writeFile(
      path.join(dir, `gateway-${g}.json`),
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        redis: { url: state.redis.url, prefix },
        servers: {
          everything: {
            command: process.execPath,
            args: [EVERYTHING_ENTRY, 'stdio'],
            policy: path.join(dir, 'policy.json'),
          },
        },
        data_dir: path.join(dir, `data-${g}`),
      }),
    );
  }
  const built = await readFile(path.join(REPO_ROOT, 'dist/cli/main.js')).then(
    () => true,
    () => false,
  );
  if (!built) throw new Error('bench scale runs the built gateway: run `npm run build` first');
  state.gateways = await Promise.all(
    [0, 1].map((g) =>
      startServe(
        path.join(dir, `gateway-${g}.json`),
        30_000,
        { COUNTERSIGN_ADMIN_TOKEN: ADMIN_TOKEN },
        'build',
      ),
    ),
  );
  const gateways = state.gateways;
  const failures: string[] = [];

  // Held calls.
  console.error(`bench scale: ${HELD} held calls over ${HELD_SESSIONS} sessions on 2 gateways`);
  const heldSessions = await Promise.all(
    Array.from({ length: HELD_SESSIONS }, (_, i) =>
      connect(`${gateways[i % 2]?.url ?? ''}/everything`, `held-${i}`),
    ),
  );
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const rssMbBefore = await Promise.all(gateways.map((g) => rssMb(g.pid)));
  const redisMbBefore = await redisMb(redis);
  const parkStarted = performance.now();
  let answered = 0;
  let failedEarly: string | undefined;
  const held: Promise<void>[] = [];
  // In waves of HELD_WAVE: 10,000 connections opened in the same millisecond overflow the listen backlog, and
  // clients do not all arrive at once.
  for (let start = 0; start < HELD; start += HELD_WAVE) {
    for (let i = start; i < Math.min(HELD, start + HELD_WAVE); i++) {
      const session = heldSessions[i % HELD_SESSIONS];
      if (!session) throw new Error('no session');
      held.push(
        session.client
          .callTool({ name: 'echo', arguments: { message: `held-${i}` } }, undefined, { timeout: 1_800_000 })
          .then(
            (result) => {
              const text = (result.content as { text?: string }[])[0]?.text ?? '';
              if (!result.isError && text.includes(`held-${i}`)) answered += 1;
            },
            (error: Error) => {
              failedEarly ??= error.message;
            },
          ),
      );
    }
    const target = Math.min(HELD, start + HELD_WAVE);
    await until(
      async () => {
        if (failedEarly) throw new Error(`bench scale: a held call failed: ${failedEarly}`);
        return (await redis.zcard(`${prefix}approvals:pending`)) >= target;
      },
      120_000,
      `${target} held calls to park`,
    );
  }
  const parkSeconds = (performance.now() - parkStarted) / 1000;
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const rssMbHeld = await Promise.all(gateways.map((g) => rssMb(g.pid)));
  const redisMbHeld = await redisMb(redis);
  // Held a while longer: what a process holding them needs once the burst of parking has been collected.
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  if (failedEarly) throw new Error(`bench scale: a held call failed: ${failedEarly}`);
  const rssMbSettled = await Promise.all(gateways.map((g) => rssMb(g.pid)));
  const heldIds = await pendingIds(redis, prefix);
  console.error(`bench scale: parked in ${parkSeconds.toFixed(1)} s; approving them all`);
  const drainStarted = performance.now();
  await approveAll(gateways, heldIds);
  await Promise.all(held);
  const drainSeconds = (performance.now() - drainStarted) / 1000;
  const heldPacing = await pacing(redis, prefix, heldIds, PACE_HELD);
  if (answered !== HELD) failures.push(`held: ${HELD - answered} of ${HELD} calls got no result`);
  if (heldPacing.executed !== HELD)
    failures.push(`held: ${heldPacing.executed} executions for ${HELD} calls`);
  if (!heldPacing.pacing.withinLimit)
    failures.push(`held: ${heldPacing.pacing.maxInOneWindow} executions in one second (limit ${PACE_HELD})`);
  // Independent of the limiter's own records: the drain cannot be faster than the limit allows.
  if (drainSeconds < HELD / PACE_HELD - 1)
    failures.push(`held: drained in ${drainSeconds.toFixed(1)} s, faster than ${PACE_HELD}/s allows`);
  await Promise.all(
    heldSessions.map(async ({ client, transport }) => {
      await transport.terminateSession().catch(() => undefined);
      await client.close().catch(() => undefined);
    }),
  );

  // Parked as tasks, without a connection.
  console.error(`bench scale: ${PARKED} calls parked as tasks over ${PARK_SESSIONS} sessions`);
  const parkSessions = await Promise.all(
    Array.from({ length: PARK_SESSIONS }, (_, i) =>
      connect(`${gateways[i % 2]?.url ?? ''}/everything`, `park-${i}`),
    ),
  );
  const parkedBefore = await redisMb(redis);
  const parkedStarted = performance.now();
  let sent = 0;
  const taskIds: string[] = [];
  await Promise.all(
    Array.from({ length: PARK_IN_FLIGHT }, async (_, worker) => {
      const session = parkSessions[worker % PARK_SESSIONS];
      if (!session) throw new Error('no session');
      for (let n = sent++; n < PARKED; n = sent++) {
        const created = await session.client.request(
          { method: 'tools/call', params: { name: 'get-sum', arguments: { a: n, b: 1 }, task: {} } },
          CreateTaskResultSchema,
          { timeout: 120_000 },
        );
        taskIds.push(created.task.taskId);
      }
    }),
  );
  const parkedSeconds = (performance.now() - parkedStarted) / 1000;
  await Promise.all(
    parkSessions.map(async ({ client, transport }) => {
      await transport.terminateSession().catch(() => undefined);
      await client.close().catch(() => undefined);
    }),
  );
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const parkedMb = await redisMb(redis);
  const rssMbParked = await Promise.all(gateways.map((g) => rssMb(g.pid)));
  const parkedIds = await pendingIds(redis, prefix);
  if (parkedIds.length !== PARKED)
    failures.push(`parked: ${parkedIds.length} pending approvals for ${PARKED} tasks`);
  console.error(`bench scale: parked in ${parkedSeconds.toFixed(1)} s; approving them all`);
  const approveStarted = performance.now();
  await approveAll(gateways, parkedIds);
  const approveSeconds = (performance.now() - approveStarted) / 1000;
  await until(
    async () =>
      (await redis.zcard(`${prefix}approvals:awaiting-execution`)) === 0 &&
      (await redis.scard(`${prefix}approvals:running`)) === 0,
    900_000,
    'every approved task to run',
  );
  const parkedDrainSeconds = (performance.now() - approveStarted) / 1000;
  const parkedPacing = await pacing(redis, prefix, parkedIds, PACE_PARKED);
  if (parkedPacing.executed !== PARKED)
    failures.push(`parked: ${parkedPacing.executed} executions for ${PARKED} tasks`);
  if (parkedDrainSeconds < PARKED / PACE_PARKED - 1)
    failures.push(`parked: ran in ${parkedDrainSeconds.toFixed(1)} s, faster than ${PACE_PARKED}/s allows`);
  if (!parkedPacing.pacing.withinLimit)
    failures.push(
      `parked: ${parkedPacing.pacing.maxInOneWindow} executions in one second (limit ${PACE_PARKED})`,
    );
  redis.disconnect();

  return {
    startedAt: started.toISOString(),
    machine: machineInfo(),
    gateways: gateways.length,
    gatewayNodeFlags: gatewayNodeFlags().join(' '),
    held: {
      calls: HELD,
      sessions: HELD_SESSIONS,
      parkSeconds,
      rssMbBefore,
      rssMbHeld,
      rssMbSettled,
      redisMbBefore,
      redisMbHeld,
      drainSeconds,
      answered,
      executed: heldPacing.executed,
      pacing: heldPacing.pacing,
      goalRssMbPerProcess: 150,
    },
    parked: {
      calls: PARKED,
      asTasks: true,
      parkSeconds: parkedSeconds,
      redisMbBefore: parkedBefore,
      redisMbParked: parkedMb,
      redisBytesPerCall: ((parkedMb - parkedBefore) * 1024 * 1024) / PARKED,
      rssMbParked,
      approveSeconds,
      drainSeconds: parkedDrainSeconds,
      executed: parkedPacing.executed,
      pacing: parkedPacing.pacing,
      goalRedisMb: 200,
    },
    pass: failures.length === 0,
    failures,
  };
}

function format(r: ScaleResult): string {
  const mb = (v: number): string => `${v.toFixed(1)} MB`;
  const h = r.held;
  const p = r.parked;
  const before = h.rssMbBefore.reduce((a, b) => a + b, 0);
  const perHeldKb = (rss: number[]): string =>
    (((rss.reduce((a, b) => a + b, 0) - before) * 1024) / h.calls).toFixed(1);
  const goal = (rss: number[]): string => (rss.every((v) => v < h.goalRssMbPerProcess) ? 'PASS' : 'MISS');
  const lines = [
    '',
    `parked calls at scale (two \`countersign serve\` processes from dist/${r.gatewayNodeFlags ? ` run with \`node ${r.gatewayNodeFlags}\`` : ''}, one redis-server; ${r.machine.cores} cores)`,
    '',
    `held (wait "hold"): ${h.calls} calls over ${h.sessions} sessions`,
    `  parked in ${h.parkSeconds.toFixed(1)} s (${(h.calls / h.parkSeconds).toFixed(0)} calls/s)`,
    `  gateway RSS: ${h.rssMbBefore.map(mb).join(', ')} before → ${h.rssMbHeld.map(mb).join(', ')} just parked (+${perHeldKb(h.rssMbHeld)} KB per held call); goal < ${h.goalRssMbPerProcess} MB per process: ${goal(h.rssMbHeld)}`,
    `  gateway RSS held ${SETTLE_MS / 1000} s more: ${h.rssMbSettled.map(mb).join(', ')} (+${perHeldKb(h.rssMbSettled)} KB per held call); goal: ${goal(h.rssMbSettled)}`,
    `  Redis: ${mb(h.redisMbBefore)} → ${mb(h.redisMbHeld)}`,
    `  all approved through the API: every held call answered after ${h.drainSeconds.toFixed(1)} s (${h.answered}/${h.calls} answered, ${h.executed} executions)`,
    `  pacing: at most ${h.pacing.maxInOneWindow} admitted in one limiter window (1 s) over ${h.pacing.windows} windows (limit ${h.pacing.limitPerSecond}/s); drain ${h.drainSeconds.toFixed(1)} s ≥ ${(h.calls / h.pacing.limitPerSecond - 1).toFixed(1)} s (calls ÷ limit − 1, windows being whole seconds): ${h.pacing.withinLimit && h.drainSeconds >= h.calls / h.pacing.limitPerSecond - 1 ? 'PASS' : 'FAIL'}`,
    '',
    `parked without a connection (MCP tasks; their sessions ended): ${p.calls} calls`,
    `  parked in ${p.parkSeconds.toFixed(1)} s (${(p.calls / p.parkSeconds).toFixed(0)} calls/s)`,
    `  Redis: ${mb(p.redisMbBefore)} → ${mb(p.redisMbParked)} (${(p.redisBytesPerCall / 1024).toFixed(2)} KB per parked call, about ${((p.redisBytesPerCall * 100_000) / 1048576).toFixed(0)} MB per 100,000); goal < ${p.goalRedisMb} MB for 100,000: ${(p.redisBytesPerCall * 100_000) / 1048576 < p.goalRedisMb ? 'PASS' : 'MISS'}`,
    `  gateway RSS with them parked: ${p.rssMbParked.map(mb).join(', ')}`,
    `  all approved through the API in ${p.approveSeconds.toFixed(1)} s; all run by the background runners after ${p.drainSeconds.toFixed(1)} s (${p.executed} executions)`,
    `  pacing: at most ${p.pacing.maxInOneWindow} admitted in one limiter window (1 s) over ${p.pacing.windows} windows (limit ${p.pacing.limitPerSecond}/s); run ${p.drainSeconds.toFixed(1)} s ≥ ${(p.calls / p.pacing.limitPerSecond - 1).toFixed(1)} s: ${p.pacing.withinLimit && p.drainSeconds >= p.calls / p.pacing.limitPerSecond - 1 ? 'PASS' : 'FAIL'}`,
  ];
  if (r.failures.length) lines.push('', ...r.failures.map((f) => `FAIL ${f}`));
  return lines.join('\n');
}

const state: { dir?: string; redis?: EmbeddedRedis; gateways: ServeProcess[] } = { gateways: [] };
async function cleanUp(): Promise<void> {
  await Promise.all(state.gateways.map((g) => g.stop().catch(() => undefined)));
  await state.redis?.stop().catch(() => undefined);
  if (state.dir) await rm(state.dir, { recursive: true, force: true }).catch(() => undefined);
}
const watchdog = setTimeout(() => {
  console.error(`bench scale: still running after ${WATCHDOG_MS / 60_000} min; stopping`);
  void cleanUp().then(() => process.exit(1));
}, WATCHDOG_MS);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void cleanUp().then(() => process.exit(130)));
}

let exitCode = 0;
try {
  const result = await main(state);
  console.log(format(result));
  await mkdir(path.dirname(RESULTS_FILE), { recursive: true });
  await writeFile(RESULTS_FILE, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwritten: ${path.relative(process.cwd(), RESULTS_FILE)}`);
  if (!result.pass) exitCode = 1;
} catch (error) {
  console.error(
    `bench scale failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
  );
  exitCode = 1;
} finally {
  await cleanUp();
  clearTimeout(watchdog);
}
process.exit(exitCode);
