import type { AuditLog } from '../audit/log.js';
import type { AuditSpool } from '../audit/spool.js';
import type { GatewayConfig, Grant } from '../config/load.js';
import type { LimitCounters } from '../limits/counters.js';
import type { Logger } from '../log/logger.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { InflightCalls } from './inflight.js';
import type { PolicyBook } from './policy-book.js';

/** The long-lived parts every session of one gateway process shares. */
export interface GatewayServices {
  config: GatewayConfig;
  policies: PolicyBook;
  limits: LimitCounters;
  /** Appends the decisions that gate a call: a failure refuses the call. */
  audit: AuditLog;
  /** Appends events that must not be lost when Redis is briefly gone (refusals, results). */
  auditSpool: AuditSpool;
  metrics: GatewayMetrics;
  logger: Logger;
  inflight: InflightCalls;
  /** Milliseconds since the epoch; injectable for tests. */
  now: () => number;
}

/** Who is calling, through which downstream session. */
export interface CallerIdentity {
  grant: Grant;
  sessionId: string;
}
