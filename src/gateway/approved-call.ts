/**
 * Running an approved call, once — the one function every path uses (the request or session that parked the
 * call, the agent's `wait: return` retry, and the background runner for MCP tasks), called by whoever won the
 * atomic claim: re-check the grant and the policy in force now (a tightening reload applies to every call
 * that has not run), take the tool's limits (waiting for the next window when they are full, so approving a
 * backlog paces it), write the `approved` decision to the audit trail, forward it upstream.
 */
import type { CallToolRequest } from '@modelcontextprotocol/sdk/types.js';
import type { Execution } from '../approvals/parking.js';
import type { ApprovalRecord } from '../approvals/record.js';
import { LimitStoreUnavailableError } from '../limits/counters.js';
import type { LimitSubject, Reservation } from '../limits/counters.js';
import type { LimitSpec } from '../policy/types.js';
import type { UpstreamConnection } from '../upstream/connection.js';
import { refusal } from './answers.js';
import type { RefusalDetail } from './answers.js';
import { recheckApproved } from './approval-recheck.js';
import type { Recheck } from './approval-recheck.js';
import { writeAudit } from './audit-write.js';
import { auditAllowed, decisionEvent, forward } from './pipeline.js';
import type { EventBase } from './pipeline.js';
import type { GatewayServices } from './services.js';
import { abortableSleep } from './abortable-sleep.js';

export interface ApprovedUpstream {
  connection: UpstreamConnection;
  /** The upstream tool only runs as a task: it is called as one and its result awaited. */
  upstreamTask: boolean;
}

export interface ApprovedRun {
  services: GatewayServices;
  /** The audit fields of the call, with its approval id. */
  base: EventBase;
  subject: LimitSubject;
  /** The upstream connection to send it on; opened (or found) only once the re-check has passed. */
  upstream: () => Promise<ApprovedUpstream>;
  /** The tools/call params as the upstream expects them (upstream tool name, no `task`). */
  params: CallToolRequest['params'];
  /** Aborts the wait for a rate window: the call then has not started (`not_started`). */
  waitSignal: AbortSignal;
  /** Aborts the upstream call itself. */
  callSignal: AbortSignal;
  /** Who claimed the execution: checked again just before the call goes upstream. */
  claimant: string;
  record: ApprovalRecord;
}

const STORE_UNAVAILABLE: RefusalDetail = {
  reason: 'store_unavailable',
  message: 'policy store unavailable (Redis cannot be reached), so no call is allowed; try again shortly.',
};

function refused(detail: RefusalDetail): Execution {
  return {
    outcome: 'refused',
    result: {
      isError: true,
      content: [{ type: 'text', text: `Countersign could not run the approved call: ${detail.message}` }],
    },
  };
}

export async function executeApproved(run: ApprovedRun): Promise<Execution> {
  const { services, record } = run;
  // Who voted (to tell whether a reviewer a reload removed took part); unreadable → any removal refuses.
  const voters = await services.approvals.store.approverTokens(record.id).catch(() => undefined);
  const recheck = inForce(run, voters);
  if (!recheck.ok) return refuseChanged(run, recheck.detail);
  let upstream: ApprovedUpstream;
  try {
    upstream = await run.upstream();
  } catch (error) {
    return {
      outcome: 'upstream_error',
      result: refusal(record.server, record.tool, {
        reason: 'upstream_unavailable',
        message: `the approved call could not be sent: ${(error as Error).message}`,
      }),
    };
  }
  const reservation = await reservePaced(services, recheck.limits, run.subject, run.waitSignal);
  if (!('ok' in reservation)) {
    if (reservation.reason === 'interrupted')
      return { outcome: 'not_started', result: refused(reservation).result };
    return refused(reservation);
  }
  // A reload during the wait for a rate window applies too: checked again just before the call goes.
  const still = inForce(run, voters);
  if (!still.ok) {
    await services.limits.release(reservation).catch(() => undefined);
    return refuseChanged(run, still.detail);
  }
  // Fence: after a long wait for a rate window (or a Redis outage), the claim may have been declared orphaned
  // and the call reported interrupted. Then it must not run.
  const start = await startFenced(services, record.id, run.claimant, reservation.at);
  if (start !== 'start') {
    await services.limits.release(reservation).catch(() => undefined);
    // Superseded: reported interrupted by another process. Unavailable: not started; the claim is given back.
    return {
      outcome: start === 'superseded' ? 'superseded' : 'not_started',
      result: refused(STORE_UNAVAILABLE).result,
    };
  }
  const approvedBy = record.decidedByName || record.decidedBy || 'a reviewer';
  const audited = await auditAllowed(
    services,
    run.base,
    still.rule,
    `approved by ${approvedBy} (approval ${record.id})`,
    reservation,
    'approved',
  );
  if (!audited) return refused({ reason: 'audit_unavailable', message: 'the audit trail cannot be written' });
  if (record.decidedAt)
    services.metrics.resumeDelay.observe(Math.max(0, services.now() - record.decidedAt) / 1000);
  const forwarded = await forward(services, run.base, still.rule, reservation, upstream.connection, {
    params: run.params,
    signal: run.callSignal,
    ...(upstream.upstreamTask ? { upstreamTask: true } : {}),
  });
  // The params carry no task, so the upstream answers with a result, never a task of its own.
  const outcome = forwarded.outcome === 'task_created' ? 'upstream_error' : forwarded.outcome;
  return { result: forwarded.result, outcome };
}

/** The grant and the policy in force now, for this approved call (see approval-recheck.ts). */
function inForce(run: ApprovedRun, voters: ReadonlySet<string> | undefined): Recheck {
  const { services, record } = run;
  return recheckApproved(
    record,
    services.config.grants.find((g) => g.id === record.grant),
    services.policies.resolve(record.server, record.grant),
    voters,
  );
}

/** Audited as the call's decision, and kept as its outcome: the approval is used up, the call never runs. */
async function refuseChanged(run: ApprovedRun, detail: RefusalDetail): Promise<Execution> {
  const { services, record } = run;
  await writeAudit(services, decisionEvent(services.now(), run.base, 'deny', detail, []));
  services.metrics.calls.inc({ server: record.server, decision: 'deny', reason: detail.reason });
  return { outcome: 'refused', result: refusal(record.server, record.tool, detail) };
}

/**
 * Runs START_SCRIPT, retrying Redis errors for a few seconds (it is idempotent for its claimant, so a reply
 * lost after it applied is harmless to repeat). 'superseded' only when Redis says the claim is not ours.
 */
async function startFenced(
  services: GatewayServices,
  id: string,
  claimant: string,
  admittedAt: number,
): Promise<'start' | 'superseded' | 'unavailable'> {
  for (let attempt = 1; attempt <= 10; attempt++) {
    try {
      return (await services.approvals.store.start(id, claimant, services.now(), admittedAt))
        ? 'start'
        : 'superseded';
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  return 'unavailable';
}

/** Takes the tool's limits for an approved call, waiting for the next window while they are full. */
async function reservePaced(
  services: GatewayServices,
  limits: LimitSpec[],
  subject: LimitSubject,
  signal: AbortSignal,
): Promise<(Reservation & { at: number }) | RefusalDetail> {
  let storeFailures = 0;
  for (;;) {
    if (signal.aborted)
      return { reason: 'interrupted', message: 'the gateway stopped before the approved call could run' };
    try {
      const at = services.now();
      const reserved = await services.limits.reserve(limits, subject, at);
      if (reserved.ok) return { ...reserved, at };
      await abortableSleep(
        Math.max(10, reserved.retryAt.getTime() - services.now()) + Math.random() * 50,
        signal,
      );
    } catch (error) {
      if (!(error instanceof LimitStoreUnavailableError) || ++storeFailures > 30) return STORE_UNAVAILABLE;
      await abortableSleep(1000, signal);
    }
  }
}
