/**
 * `npm run bench`: latency and throughput of an allowed tools/call, direct to server-everything,
 * through mcp-proxy (npm; stdio topology only) and through Countersign (policy with a limit + audit on),
 * at concurrency 1, 32 and 128; in the stdio run also the limiter precision across two gateway processes.
 * See bench/README.md.
 *
 * Knobs (environment): BENCH_UPSTREAM=http|stdio (default http), BENCH_CLIENTS=shared|per-caller (default shared), BENCH_ROUNDS (default 2),
 * BENCH_SCALE (multiplies the call counts, default 1), BENCH_PROXY=0 (no mcp-proxy side), BENCH_PRECISION=0 (no precision section).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedRedis } from '../src/redis/embedded.js';
import type { EmbeddedRedis } from '../src/redis/embedded.js';
import { BENCH_POLICY, startBenchGateway } from './gateway.js';
import type { BenchGateway } from './gateway.js';
import type { ClientMode, LoadResult } from './load.js';
import { LoadThread } from './load-thread.js';
import { runApprovals } from './approvals.js';
import type { ApprovalsResult } from './approvals.js';
import { runPrecision } from './precision.js';
import type { PrecisionResult } from './precision.js';
import { compare, formatReport, judge, judgeProxy, writeReport } from './report.js';
import type { BenchReport, ConcurrencyResult, SideResult } from './report.js';
import { summarize } from './stats.js';
import { envNumber, machineInfo } from './system.js';
import { EVERYTHING_ENTRY, REPO_ROOT, startEverythingHttp, startMcpProxy } from './upstream.js';
import { countListenerWarnings } from './warnings.js';
import type { WarningCount } from './warnings.js';
import type { RunningUpstream } from './upstream.js';

const PROXY_VERSION = (
  JSON.parse(await readFile(path.join(REPO_ROOT, 'node_modules/mcp-proxy/package.json'), 'utf8').catch(() => '{}')) as {
    version?: string;
  }
).version ?? '?';
const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
/** The whole run is killed after this long (about two minutes per topology on 2 cores). */
const WATCHDOG_MS = 300_000;
/** One measured run stops early after this long. */
const RUN_MAX_MS = 12_000;
const WARMUP_CALLS = 200;

const scale = envNumber('BENCH_SCALE', 1);
const rounds = Math.floor(envNumber('BENCH_ROUNDS', 2));
const clientMode: ClientMode = process.env.BENCH_CLIENTS === 'per-caller' ? 'per-caller' : 'shared';
/** `http` (default): the gateway fronts the direct side's own server; `stdio`: its own server over stdio. */
const upstreamMode: 'http' | 'stdio' = process.env.BENCH_UPSTREAM === 'stdio' ? 'stdio' : 'http';
const RESULTS_FILE = path.join(RESULTS_DIR, upstreamMode === 'stdio' ? 'latest-stdio.json' : 'latest-http.json');
const LEVELS = [
  { concurrency: 1, calls: Math.max(50, Math.round(1000 * scale)) },
  { concurrency: 32, calls: Math.max(200, Math.round(4000 * scale)) },
  { concurrency: 128, calls: Math.max(500, Math.round(4000 * scale)) },
];
/** The mcp-proxy side fronts a stdio server, so it is measured in the stdio topology only. */
const withProxy = upstreamMode === 'stdio' && process.env.BENCH_PROXY !== '0';
/** The precision section does not depend on the topology: it runs once, in the stdio run. */
const withPrecision = upstreamMode === 'stdio' && process.env.BENCH_PRECISION !== '0';
/** So does the approvals section (time to resume, parked calls at scale). */
const withApprovals = upstreamMode === 'stdio' && process.env.BENCH_APPROVALS !== '0';

type Side = 'direct' | 'proxy' | 'gateway';

/**
 * Mirrored order: direct, (proxy,) gateway, gateway, (proxy,) direct, … so slow drift (thermal, caches, GC)
 * hits every side alike.
 */
function order(roundCount: number): Side[] {
  const forward: Side[] = withProxy ? ['direct', 'proxy', 'gateway'] : ['direct', 'gateway'];
  const sides: Side[] = [];
  for (let i = 0; i < roundCount; i++) sides.push(...(i % 2 === 0 ? forward : [...forward].reverse()));
  return sides;
}

function sideResult(runs: readonly LoadResult[]): SideResult {
  const calls = runs.reduce((n, r) => n + r.latencies.length, 0);
  const elapsed = runs.reduce((n, r) => n + r.elapsedMs, 0);
  return {
    latency: summarize(runs.map((r) => r.latencies)),
    calls,
    errors: runs.reduce((n, r) => n + r.errors, 0),
    callsPerSec: calls / (elapsed / 1000),
    roundCallsPerSec: runs.map((r) => r.latencies.length / (r.elapsedMs / 1000)),
    roundCalls: runs.map((r) => r.latencies.length),
  };
}

function notes(loadAverage: number, suppressedWarnings: number, gatewayWarnings: WarningCount): string[] {
  const out: string[] = [];
  if (loadAverage > 0.5) {
    out.push(`the machine was busy when the run started (load average ${loadAverage.toFixed(2)}): numbers are noisier than on an idle machine`);
  }
  if (suppressedWarnings > 0) {
    out.push(
      `the load generator's SDK clients raised ${suppressedWarnings} MaxListenersExceededWarnings (abort listeners on the transport's one AbortSignal); not printed`,
    );
  }
  if (gatewayWarnings.count > 0) {
    out.push(
      `the gateway process raised ${gatewayWarnings.count} MaxListenersExceededWarnings (counted here; \`countersign serve\` prints each one, with a stack, to stderr); first from: ${gatewayWarnings.firstStack ?? '?'}`,
    );
  }
  return out;
}

interface Resources {
  dir?: string;
  redis?: EmbeddedRedis;
  upstream?: RunningUpstream;
  proxy?: RunningUpstream;
  bench?: BenchGateway;
  load?: LoadThread;
}

async function cleanUp(res: Resources): Promise<void> {
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (error) {
      console.error(`cleanup: ${what} failed: ${(error as Error).message}`);
    }
  };
  if (res.load) await step('load worker', () => res.load?.close() ?? Promise.resolve());
  if (res.bench) await step('gateway', () => res.bench?.gateway.close() ?? Promise.resolve());
  if (res.proxy) await step('mcp-proxy', () => res.proxy?.stop() ?? Promise.resolve());
  if (res.upstream) await step('server-everything', () => res.upstream?.stop() ?? Promise.resolve());
  if (res.redis) await step('redis-server', () => res.redis?.stop() ?? Promise.resolve());
  if (res.dir) await step('temp dir', () => rm(res.dir ?? '', { recursive: true, force: true }));
}

/** Returns false when a correctness check (not a performance aim) failed after the report was written. */
async function main(res: Resources): Promise<boolean> {
  const started = Date.now();
  const machine = machineInfo();
  res.dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-bench-'));
  res.redis = await startEmbeddedRedis({ dir: path.join(res.dir, 'redis'), reuse: false });
  res.upstream = await startEverythingHttp();
  res.bench = await startBenchGateway({
    dir: res.dir,
    redisUrl: res.redis.url,
    upstreamUrl: res.upstream.url,
    ...(upstreamMode === 'stdio' ? { stdio: { entry: EVERYTHING_ENTRY } } : {}),
  });
  if (withProxy) res.proxy = await startMcpProxy();
  res.load = new LoadThread();
  const urls: Record<Side, string> = { direct: res.upstream.url, proxy: res.proxy?.url ?? '', gateway: res.bench.mcpUrl };
  console.error(
    `bench: upstream ${urls.direct},${withProxy ? ` mcp-proxy ${urls.proxy},` : ''} gateway ${urls.gateway}, clients ${clientMode}`,
  );

  const results: ConcurrencyResult[] = [];
  let gatewayCalls = 0;
  for (const level of LEVELS) {
    const runs: Record<Side, LoadResult[]> = { direct: [], proxy: [], gateway: [] };
    for (const side of order(rounds)) {
      const result = await res.load.run({
        url: urls[side],
        concurrency: level.concurrency,
        clientMode,
        warmup: WARMUP_CALLS,
        calls: level.calls,
        maxMs: RUN_MAX_MS,
      });
      if (result.errors > 0) throw new Error(`${side} c=${level.concurrency}: ${result.errors} calls failed; first: ${result.firstError ?? '?'}`);
      if (side === 'gateway') gatewayCalls += WARMUP_CALLS + result.latencies.length;
      runs[side].push(result);
      console.error(
        `bench: c=${level.concurrency} ${(side === 'proxy' ? 'mcp-proxy' : side).padEnd(9)} ${result.latencies.length} calls in ${(result.elapsedMs / 1000).toFixed(2)} s`,
      );
    }
    results.push(
      compare(level.concurrency, sideResult(runs.direct), sideResult(runs.gateway), withProxy ? sideResult(runs.proxy) : undefined),
    );
  }

  // Every gateway call leaves a decision and a result event in the hash-chained trail; besides those, only
  // the `policy` events (which policies are in force, written at start) may be there.
  const verified = await res.bench.gateway.services.audit.verify();
  const policyEvents = (await res.bench.gateway.services.audit.query({ type: 'policy', limit: 1000 })).length;
  const expectedEvents = gatewayCalls * 2 + policyEvents;
  if (!verified.ok || verified.count !== expectedEvents) {
    throw new Error(
      `audit trail: expected ${expectedEvents} chained events (${gatewayCalls} calls × 2 + ${policyEvents} policy), found ${verified.count} (ok: ${verified.ok})`,
    );
  }

  let approvals: ApprovalsResult | undefined;
  if (withApprovals) {
    console.error('bench: approvals (one `countersign serve` process: time to resume, 1,000 parked calls)');
    approvals = await runApprovals({ dir: res.dir, redisUrl: res.redis.url });
  }

  let precision: PrecisionResult | undefined;
  if (withPrecision) {
    console.error('bench: limiter precision (two `countersign serve` processes, one Redis)');
    precision = await runPrecision({ dir: res.dir, redisUrl: res.redis.url });
  }

  const report: BenchReport = {
    startedAt: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    machine,
    setup: {
      tool: 'echo {message} (server-everything), allowed',
      upstream:
        upstreamMode === 'stdio'
          ? 'direct: server-everything over Streamable HTTP; gateway: its own server-everything over stdio'
          : 'server-everything, Streamable HTTP, separate process; the same instance for both sides',
      gatewayPath:
        upstreamMode === 'stdio'
          ? 'SDK client → Countersign /mcp/everything (in this process) → server-everything over stdio'
          : 'SDK client → Countersign /mcp/everything (in this process) → the same upstream over Streamable HTTP',
      policy: BENCH_POLICY,
      audit: 'on (hash-chained Redis stream, private redis-server; decision + result event per call)',
      clientMode:
        clientMode === 'shared'
          ? 'one MCP client session shared by all concurrent callers (same on both sides)'
          : 'one MCP client session per concurrent caller (same on both sides)',
      loadGenerator: 'MCP SDK clients in a worker thread (own event loop, not the gateway\'s)',
      warmupCalls: WARMUP_CALLS,
      rounds,
      order: order(rounds).join(','),
      callsPerRound: Object.fromEntries(LEVELS.map((l) => [String(l.concurrency), l.calls])),
      ...(withProxy
        ? {
            proxy: `mcp-proxy ${PROXY_VERSION} (npm, default settings; --server stream) → its own server-everything over stdio`,
          }
        : {}),
    },
    results,
    aims: judge(results),
    ...(withProxy ? { proxyGoals: judgeProxy(results) } : {}),
    ...(precision ? { precision } : {}),
    ...(approvals ? { approvals } : {}),
    auditTrail: { events: verified.count, policyEvents, verified: verified.ok },
    notes: notes(machine.loadAverageAtStart, res.load.suppressedWarnings, gatewayWarnings),
  };
  console.log(formatReport(report));
  await writeReport(report, RESULTS_FILE);
  console.log(`\nwritten: ${path.relative(process.cwd(), RESULTS_FILE)}`);
  if (precision && !precision.pass) {
    console.error('bench: limiter precision FAILED (see the report above)');
    return false;
  }
  return true;
}

const gatewayWarnings = countListenerWarnings('bench');
const resources: Resources = {};
const watchdog = setTimeout(() => {
  console.error(`bench: still running after ${WATCHDOG_MS / 1000} s; stopping`);
  void Promise.race([cleanUp(resources), new Promise((r) => setTimeout(r, 10_000))]).then(() => process.exit(1));
}, WATCHDOG_MS);

// Ctrl-C: redis-server is started detached, so stop it (and the rest) before leaving.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`bench: ${signal}; cleaning up`);
    void Promise.race([cleanUp(resources), new Promise((r) => setTimeout(r, 10_000))]).then(() => process.exit(130));
  });
}

let exitCode = 0;
try {
  if (!(await main(resources))) exitCode = 1;
} catch (error) {
  console.error(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  exitCode = 1;
} finally {
  await cleanUp(resources);
  clearTimeout(watchdog);
}
process.exit(exitCode);
