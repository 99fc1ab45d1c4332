import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LatencySummary } from './stats.js';
import { round } from './stats.js';
import type { MachineInfo } from './system.js';
import type { ApprovalsResult } from './approvals.js';
import type { PrecisionResult } from './precision.js';

export interface SideResult {
  latency: LatencySummary;
  calls: number;
  errors: number;
  /** Measured calls divided by measured wall time, over all rounds. */
  callsPerSec: number;
  /** Calls per second of each round, in run order. */
  roundCallsPerSec: number[];
  /** Measured calls of each round (fewer than asked when a round hit its time cap). */
  roundCalls: number[];
}

export interface ConcurrencyResult {
  concurrency: number;
  direct: SideResult;
  gateway: SideResult;
  addedP50Ms: number;
  addedP99Ms: number;
  /** gateway calls/s ÷ direct calls/s */
  throughputRatio: number;
  /** mcp-proxy (npm) in front of its own server-everything over stdio; stdio topology only. */
  proxy?: SideResult;
  /** Countersign against mcp-proxy: calls/s ratio and added latency. */
  vsProxy?: { throughputRatio: number; addedP50Ms: number; addedP99Ms: number };
}

export interface Aim {
  name: string;
  target: string;
  measured: string;
  pass: boolean;
}

export interface BenchReport {
  startedAt: string;
  durationSeconds: number;
  machine: MachineInfo;
  setup: {
    tool: string;
    upstream: string;
    gatewayPath: string;
    policy: unknown;
    audit: string;
    clientMode: string;
    loadGenerator: string;
    warmupCalls: number;
    rounds: number;
    order: string;
    callsPerRound: Record<string, number>;
    proxy?: string;
  };
  results: ConcurrencyResult[];
  aims: Aim[];
  /** Goals against the plain proxy, per concurrency (stdio topology only). */
  proxyGoals?: Aim[];
  /** Two gateway processes, one Redis, one global limit (stdio run only). */
  precision?: PrecisionResult;
  approvals?: ApprovalsResult;
  auditTrail: { events: number; policyEvents: number; verified: boolean };
  notes: string[];
}

export const ADDED_P50_AIM_MS = 1;
export const THROUGHPUT_AIM = 0.7;

export function compare(concurrency: number, direct: SideResult, gateway: SideResult, proxy?: SideResult): ConcurrencyResult {
  return {
    concurrency,
    direct,
    gateway,
    addedP50Ms: gateway.latency.p50 - direct.latency.p50,
    addedP99Ms: gateway.latency.p99 - direct.latency.p99,
    throughputRatio: gateway.callsPerSec / direct.callsPerSec,
    ...(proxy
      ? {
          proxy,
          vsProxy: {
            throughputRatio: gateway.callsPerSec / proxy.callsPerSec,
            addedP50Ms: gateway.latency.p50 - proxy.latency.p50,
            addedP99Ms: gateway.latency.p99 - proxy.latency.p99,
          },
        }
      : {}),
  };
}

export const PROXY_THROUGHPUT_GOAL = 1.0;
export const PROXY_ADDED_P50_GOAL_MS = 0.3;
export const DIRECT_THROUGHPUT_GOAL = 0.95;

/**
 * Goals against the plain proxy, judged at every concurrency: (1) Countersign (c) at least as many calls/s
 * as mcp-proxy (b), with p50 within +0.3 ms of b; (2) c at least 95% of direct (a) calls/s.
 */
export function judgeProxy(results: readonly ConcurrencyResult[]): Aim[] {
  const goals: Aim[] = [];
  for (const r of results) {
    if (!r.vsProxy) continue;
    const { throughputRatio, addedP50Ms } = r.vsProxy;
    goals.push({
      name: `c=${r.concurrency}: Countersign vs mcp-proxy, c/b calls/s and added p50`,
      target: `c/b >= ${PROXY_THROUGHPUT_GOAL.toFixed(2)} and p50 <= b + ${PROXY_ADDED_P50_GOAL_MS} ms`,
      measured: `c/b ${throughputRatio.toFixed(3)}, p50 ${addedP50Ms >= 0 ? '+' : ''}${addedP50Ms.toFixed(3)} ms`,
      pass: throughputRatio >= PROXY_THROUGHPUT_GOAL && addedP50Ms <= PROXY_ADDED_P50_GOAL_MS,
    });
    goals.push({
      name: `c=${r.concurrency}: Countersign vs direct, c/a calls/s`,
      target: `c/a >= ${DIRECT_THROUGHPUT_GOAL.toFixed(2)}`,
      measured: `c/a ${r.throughputRatio.toFixed(3)}`,
      pass: r.throughputRatio >= DIRECT_THROUGHPUT_GOAL,
    });
  }
  return goals;
}

/** The aims from the issue: < 1 ms added at p50 (judged at concurrency 1), ≥ 70% of direct throughput at 32. */
export function judge(results: readonly ConcurrencyResult[]): Aim[] {
  const aims: Aim[] = [];
  const c1 = results.find((r) => r.concurrency === 1);
  if (c1) {
    aims.push({
      name: 'added latency p50 at concurrency 1',
      target: `< ${ADDED_P50_AIM_MS} ms`,
      measured: `${c1.addedP50Ms.toFixed(3)} ms`,
      pass: c1.addedP50Ms < ADDED_P50_AIM_MS,
    });
  }
  const c32 = results.find((r) => r.concurrency === 32);
  if (c32) {
    aims.push({
      name: 'throughput at concurrency 32, gateway / direct',
      target: `>= ${(THROUGHPUT_AIM * 100).toFixed(0)}%`,
      measured: `${(c32.throughputRatio * 100).toFixed(1)}%`,
      pass: c32.throughputRatio >= THROUGHPUT_AIM,
    });
  }
  return aims;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((r) => (r[col] ?? '').length))) ?? [];
  return rows
    .map((r, i) => {
      const line = r.map((cell, col) => (col === 0 ? cell.padEnd(widths[col] ?? 0) : cell.padStart(widths[col] ?? 0))).join('  ');
      return i === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}

const ms = (v: number): string => v.toFixed(3);
const rate = (v: number): string => v.toFixed(0);

export function formatReport(report: BenchReport): string {
  const { machine, setup } = report;
  const lines: string[] = [];
  lines.push(`Countersign benchmark — allowed tools/call of "echo", direct vs through the gateway${setup.proxy ? ' vs mcp-proxy' : ''}`);
  lines.push(
    `node ${machine.node} (${machine.platform}), CPU: ${machine.cpuModel}, ${machine.cores} cores, load average at start ${machine.loadAverageAtStart.toFixed(2)}`,
  );
  lines.push(`upstream: ${setup.upstream}; gateway: ${setup.gatewayPath}`);
  lines.push(`policy: default deny, echo allowed with a per-grant limit (max 100000000/minute); audit: ${setup.audit}`);
  lines.push(`clients: ${setup.clientMode}; ${setup.loadGenerator}`);
  lines.push(
    `warm-up ${setup.warmupCalls} calls per run (not measured); ${setup.rounds} rounds per side, order ${setup.order}; ` +
      `measured calls per round: ${Object.entries(setup.callsPerRound)
        .map(([c, n]) => `c=${c}: ${n}`)
        .join(', ')}`,
  );
  lines.push('');
  const header = [
    'concurrency',
    'direct p50',
    'direct p99',
    'gateway p50',
    'gateway p99',
    'added p50',
    'added p99',
    'direct calls/s',
    'gateway calls/s',
    'gw/direct',
  ];
  const rows = report.results.map((r) => [
    String(r.concurrency),
    ms(r.direct.latency.p50),
    ms(r.direct.latency.p99),
    ms(r.gateway.latency.p50),
    ms(r.gateway.latency.p99),
    ms(r.addedP50Ms),
    ms(r.addedP99Ms),
    rate(r.direct.callsPerSec),
    rate(r.gateway.callsPerSec),
    `${(r.throughputRatio * 100).toFixed(1)}%`,
  ]);
  lines.push('latencies in ms (per call, client side, performance.now())');
  lines.push(table([header, ...rows]));
  lines.push('');
  lines.push('per round, in run order (calls/s over measured calls):');
  const rounds = (side: SideResult): string =>
    side.roundCallsPerSec.map((v, i) => `${rate(v)}/s over ${side.roundCalls[i] ?? 0}`).join(', ');
  for (const r of report.results) {
    lines.push(
      `  c=${r.concurrency}: direct ${rounds(r.direct)};${r.proxy ? ` mcp-proxy ${rounds(r.proxy)};` : ''} gateway ${rounds(r.gateway)}`,
    );
  }
  const withProxy = report.results.filter((r) => r.proxy && r.vsProxy);
  if (withProxy.length > 0) {
    lines.push('');
    lines.push(`three sides: (a) direct, (b) mcp-proxy — ${setup.proxy ?? 'plain proxy'}, (c) Countersign; ms and calls/s`);
    const head3 = ['concurrency', 'a p50', 'a p99', 'a calls/s', 'b p50', 'b p99', 'b calls/s', 'c p50', 'c p99', 'c calls/s', 'c/b', 'c/a', 'c-b p50'];
    const rows3 = withProxy.map((r) => {
      const b = r.proxy as SideResult;
      const vs = r.vsProxy ?? { throughputRatio: Number.NaN, addedP50Ms: Number.NaN };
      return [
        String(r.concurrency),
        ms(r.direct.latency.p50),
        ms(r.direct.latency.p99),
        rate(r.direct.callsPerSec),
        ms(b.latency.p50),
        ms(b.latency.p99),
        rate(b.callsPerSec),
        ms(r.gateway.latency.p50),
        ms(r.gateway.latency.p99),
        rate(r.gateway.callsPerSec),
        vs.throughputRatio.toFixed(3),
        r.throughputRatio.toFixed(3),
        `${vs.addedP50Ms >= 0 ? '+' : ''}${ms(vs.addedP50Ms)}`,
      ];
    });
    lines.push(table([head3, ...rows3]));
  }
  lines.push('');
  lines.push('aims (from the issue: "under 1 ms added at p50, at least 70% of direct throughput at 32"; informational):');
  for (const aim of report.aims) {
    lines.push(`  ${aim.pass ? 'PASS' : 'MISS'}  ${aim.name}: ${aim.measured} (aim ${aim.target})`);
  }
  if (report.proxyGoals && report.proxyGoals.length > 0) {
    lines.push('');
    lines.push('goals against the plain proxy ("c/b >= 1.0 in calls/s, p50 within +0.3 ms of b"; "c/a >= 0.95"; informational):');
    for (const goal of report.proxyGoals) {
      lines.push(`  ${goal.pass ? 'PASS' : 'MISS'}  ${goal.name}: ${goal.measured} (goal ${goal.target})`);
    }
  }
  if (report.precision) {
    const p = report.precision;
    lines.push('');
    lines.push(
      `limiter precision: ${p.gateways} \`countersign serve\` processes, one Redis, global limit ${p.limit}/hour on echo; ` +
        `${p.calls} concurrent calls over ${p.gateways * p.sessionsPerGateway} sessions (${p.sessionsPerGateway} per gateway)`,
    );
    lines.push(`  ${p.admitted === p.limit ? 'PASS' : 'FAIL'}  admitted: ${p.admitted} (must be exactly ${p.limit}; per gateway ${p.admittedPerGateway.join(' + ')})`);
    lines.push(`        refused: ${p.refused}; other errors: ${p.otherErrors}${p.firstOtherError ? ` (first: ${p.firstOtherError})` : ''}`);
    lines.push(
      `  ${p.everyRefusalHasRetryAfter ? 'PASS' : 'FAIL'}  every refusal carries _meta["countersign/decision"].retryAfterSeconds: ` +
        `${p.everyRefusalHasRetryAfter ? 'yes' : 'no'} (${p.refusedWithRetryAfter} of ${p.refused})`,
    );
    lines.push(`        wall time: ${p.wallMs.toFixed(0)} ms (first call sent to last answer)`);
  }
  if (report.approvals) {
    const { resume, scale } = report.approvals;
    lines.push('');
    lines.push(`approvals (one \`countersign serve\` process, wait "hold", approved through the API):`);
    lines.push(
      `  ${resume.pass ? 'PASS' : 'MISS'}  time to resume (decision recorded → approved call starting upstream), ${resume.calls} calls one at a time: ` +
        `p50 ${resume.p50Ms.toFixed(0)} ms, p99 ${resume.p99Ms.toFixed(0)} ms, max ${resume.maxMs.toFixed(0)} ms (goal p99 < ${resume.goalP99Ms} ms; resolution ${resume.resolution})`,
    );
    lines.push(
      `        ${scale.parked} calls held open over ${scale.sessions} sessions: parked in ${scale.parkSeconds.toFixed(2)} s; ` +
        `gateway RSS ${scale.gatewayRssMbBefore.toFixed(0)} → ${scale.gatewayRssMbParked.toFixed(0)} MB ` +
        `(+${(((scale.gatewayRssMbParked - scale.gatewayRssMbBefore) * 1024) / scale.parked).toFixed(1)} KB per parked call); ` +
        `Redis used_memory ${scale.redisMbBefore.toFixed(1)} → ${scale.redisMbParked.toFixed(1)} MB`,
    );
    lines.push(
      `        all approved at once: drained in ${scale.drainSeconds.toFixed(2)} s (${(scale.parked / scale.drainSeconds).toFixed(0)} approvals/s); ` +
        `every held call answered: ${scale.allResolved ? 'yes' : 'NO'}`,
    );
  }
  lines.push('');
  lines.push(
    `audit trail: ${report.auditTrail.events} events (${report.auditTrail.policyEvents} policy, the rest decision + result), hash chain ${report.auditTrail.verified ? 'verified' : 'NOT VERIFIED'}; run took ${report.durationSeconds.toFixed(1)} s`,
  );
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}

/** Rounds every number for the JSON file. */
function rounded(value: unknown): unknown {
  if (typeof value === 'number') return round(value, 3);
  if (Array.isArray(value)) return value.map(rounded);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rounded(v)]));
  }
  return value;
}

export async function writeReport(report: BenchReport, file: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(rounded(report), null, 2)}\n`);
}
