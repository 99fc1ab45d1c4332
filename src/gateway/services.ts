import type { ApprovalDesk } from '../approvals/desk.js';
import type { ApprovalEvents } from '../approvals/events.js';
import type { ApprovalExecutions } from '../approvals/executions.js';
import type { ApprovalJobs } from '../approvals/jobs.js';
import type { Parking } from '../approvals/parking.js';
import type { ApprovalStore } from '../approvals/store.js';
import type { AuditLog } from '../audit/log.js';
import type { SlackApi } from '../slack/web.js';
import type { TaskStore } from '../tasks/store.js';
import type { AuditSpool } from '../audit/spool.js';
import type { GatewayConfig, Grant } from '../config/load.js';
import type { LimitCounters } from '../limits/counters.js';
import type { Logger } from '../log/logger.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { InflightCalls } from './inflight.js';
import type { PolicyBook } from './policy-book.js';

/** Human approval: records, the queue, where people decide, and the calls this process watches. */
export interface ApprovalServices {
  store: ApprovalStore;
  events: ApprovalEvents;
  jobs: ApprovalJobs;
  desk: ApprovalDesk;
  parking: Parking;
  /** Present when SLACK_BOT_TOKEN is set. */
  slack?: SlackApi;
  /** This process's id in claims and its liveness key. */
  processId: string;
  /** The queue of approved calls that tasks wait for. */
  executions: ApprovalExecutions;
  /** The runner and recovery sweep, once started (see approval-background.ts). */
  background?: { close(): Promise<void> };
}

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
  approvals: ApprovalServices;
  /** MCP tasks (task-augmented tool calls), shared by every process through Redis. */
  tasks: TaskStore;
  /** Milliseconds since the epoch; injectable for tests. */
  now: () => number;
}

/** Who is calling, through which downstream session. */
export interface CallerIdentity {
  grant: Grant;
  sessionId: string;
}
