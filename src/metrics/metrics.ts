import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one gateway process (its own registry, so several gateways can share a process). */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly calls = new Counter({
    name: 'countersign_tool_calls_total',
    help: 'Tool calls by server, decision and reason.',
    labelNames: ['server', 'decision', 'reason'] as const,
    registers: [this.registry],
  });
  readonly callDuration = new Histogram({
    name: 'countersign_tool_call_duration_seconds',
    help: 'Time from a tools/call arriving to its answer, by outcome.',
    labelNames: ['server', 'outcome'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly auditFailures = new Counter({
    name: 'countersign_audit_write_failures_total',
    help: 'Audit events that could not be written.',
    registers: [this.registry],
  });
  readonly sessions = new Gauge({
    name: 'countersign_sessions',
    help: 'Open downstream MCP sessions.',
    registers: [this.registry],
  });
  readonly inflight = new Gauge({
    name: 'countersign_calls_in_flight',
    help: 'Tool calls being forwarded upstream right now.',
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'countersign_auth_failures_total',
    help: 'Requests refused for a missing or wrong bearer token.',
    registers: [this.registry],
  });
  readonly authLockouts = new Counter({
    name: 'countersign_auth_lockouts_total',
    help: 'Wrong-token lockouts started here, by scope (address, token fingerprint, global ceiling).',
    labelNames: ['scope'] as const,
    registers: [this.registry],
  });

  readonly approvals = new Counter({
    name: 'countersign_approvals_total',
    help: 'Approval steps: requested, approved, rejected, expired, cancelled, reviewer_refused.',
    labelNames: ['server', 'step'] as const,
    registers: [this.registry],
  });
  readonly resumeDelay = new Histogram({
    name: 'countersign_approval_resume_seconds',
    help: 'Time from an approval being recorded to its call starting upstream.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300],
    registers: [this.registry],
  });
  /** Set by the gateway: how many parked calls this process watches. */
  parkedSource: () => number = () => 0;
  readonly parkedHere: Gauge = new Gauge({
    name: 'countersign_parked_calls_watched',
    help: 'Parked calls this process is watching (held requests or live sessions able to run them).',
    registers: [this.registry],
    collect: () => {
      this.parkedHere.set(this.parkedSource());
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'countersign_process_' });
  }
}
