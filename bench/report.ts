import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LatencySummary } from './stats.js';
import { round } from './stats.js';
import type { MachineInfo } from './system.js';

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
  };
  results: ConcurrencyResult[];
  aims: Aim[];
  auditTrail: { events: number; verified: boolean };
  notes: string[];
}

export const ADDED_P50_AIM_MS = 1;
export const THROUGHPUT_AIM = 0.7;

export function compare(concurrency: number, direct: SideResult, gateway: SideResult): ConcurrencyResult {
  return {
    concurrency,
    direct,
    gateway,
    addedP50Ms: gateway.latency.p50 - direct.latency.p50,
    addedP99Ms: gateway.latency.p99 - direct.latency.p99,
    throughputRatio: gateway.callsPerSec / direct.callsPerSec,
  };
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
  lines.push('Countersign benchmark — allowed tools/call of "echo", direct vs through the gateway');
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
    lines.push(`  c=${r.concurrency}: direct ${rounds(r.direct)}; gateway ${rounds(r.gateway)}`);
  }
  lines.push('');
  lines.push('aims (from the issue: "under 1 ms added at p50, at least 70% of direct throughput at 32"; informational):');
  for (const aim of report.aims) {
    lines.push(`  ${aim.pass ? 'PASS' : 'MISS'}  ${aim.name}: ${aim.measured} (aim ${aim.target})`);
  }
  lines.push('');
  lines.push(
    `audit trail: ${report.auditTrail.events} events, hash chain ${report.auditTrail.verified ? 'verified' : 'NOT VERIFIED'}; run took ${report.durationSeconds.toFixed(1)} s`,
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
