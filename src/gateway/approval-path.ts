/**
 * The approval stage of the pipeline, for calls the policy sends to a person:
 *   limits (check now: a call over its limit is refused and no reviewer is asked) → find the approval this
 *   exact call is bound to, or park it (max_pending) → audit `approval_requested` → queue the Slack message
 *   and the expiry → wait as the policy says (hold / return / auto) → on approval run it once, paced by
 *   the tool's limits → answer with the result, the rejection, the expiry, or "pending".
 */
import type { CallToolResult, CreateTaskResult } from '@modelcontextprotocol/sdk/types.js';
import { approvalAudit } from '../approvals/audit.js';
import type { Execution, WaitOutcome } from '../approvals/parking.js';
import type { ApprovalRecord } from '../approvals/record.js';
import { ApprovalStoreUnavailableError } from '../approvals/store.js';
import { TaskStoreUnavailableError } from '../tasks/store.js';
import { newUlid } from '../ids/ulid.js';
import { LimitStoreUnavailableError } from '../limits/counters.js';
import type { CounterUse, LimitExceeded, LimitSubject } from '../limits/counters.js';
import type { Decision, LimitSpec } from '../policy/types.js';
import type { UpstreamConnection } from '../upstream/connection.js';
import { ruleLabel } from './answers.js';
import type { RefusalDetail } from './answers.js';
import { executeApproved } from './approved-call.js';
import { withoutTask } from './pipeline.js';
import type { DownstreamCall, EventBase } from './pipeline.js';
import type { CallerIdentity, GatewayServices } from './services.js';
import { GatewayTasks, refusedDetail } from './tasks.js';

/** Key of the approval's state in a pending answer's `_meta`. */
export const APPROVAL_META_KEY = 'countersign/approval';

type ApprovalDecision = Extract<Decision, { kind: 'require_approval' }>;

export interface ApprovalCall {
  services: GatewayServices;
  caller: CallerIdentity;
  base: EventBase;
  connection: UpstreamConnection;
  /** The tool's name upstream. */
  upstreamTool: string;
  /** The upstream tool's `execution.taskSupport`: `required` means it is run as an upstream task. */
  upstreamTaskSupport?: string;
  args: Record<string, unknown>;
  decision: ApprovalDecision;
  call: DownstreamCall;
  refuse: (detail: RefusalDetail, counters?: CounterUse[]) => Promise<CallToolResult>;
}

export function rateLimited(reserved: LimitExceeded): RefusalDetail {
  const { limit, retryAt, retryAfterSeconds } = reserved;
  return {
    reason: 'rate_limited',
    message: `rate limit reached: counter "${limit.counter}" allows ${limit.max} calls per ${limit.windowSeconds} s per ${limit.scope}.`,
    rule: limit.rule,
    retryAt: retryAt.toISOString(),
    retryAfterSeconds,
    counter: { name: limit.counter, scope: limit.scope, max: limit.max, windowSeconds: limit.windowSeconds },
  };
}

const STORE_UNAVAILABLE: RefusalDetail = {
  reason: 'store_unavailable',
  message: 'policy store unavailable (Redis cannot be reached), so no call is allowed; try again shortly.',
};

function isTaskStoreError(error: unknown): boolean {
  return error instanceof TaskStoreUnavailableError;
}

function holdMs(decision: ApprovalDecision): number {
  const { wait, timeoutSeconds, holdForSeconds } = decision.approval;
  if (wait === 'return') return 0;
  if (wait === 'hold') return timeoutSeconds * 1000 + 2000;
  return Math.min(holdForSeconds, timeoutSeconds) * 1000;
}

/**
 * The approval stage. A task-augmented call (`params.task`) gets a task at once, bound to the approval; once
 * approved, the background runner executes it and the task gets the result. Otherwise the request waits.
 */
export async function handleApprovalCall(ctx: ApprovalCall): Promise<CallToolResult | CreateTaskResult> {
  const { services, caller, base, decision, refuse } = ctx;
  const approvals = services.approvals;
  const task = ctx.call.params.task;
  const subject: LimitSubject = { server: base.server, grant: caller.grant.id, session: caller.sessionId };

  let record: ApprovalRecord | undefined;
  let parkedHere = false;
  try {
    const bound = {
      server: base.server,
      tool: base.tool,
      grant: caller.grant.id,
      argsSha256: base.argsSha256,
    };
    record = await approvals.store.findBound(bound);
    if (!record) {
      // A new call: its limits are checked (without taking anything) before anyone is asked, and taken for real
      // when the approved call runs. The retry of a parked call skips this: its outcome is owed to it.
      const overLimit = await checkLimits(services, decision.limits, subject);
      if (overLimit) return refuse(overLimit.detail, overLimit.counters);
      const created = await approvals.store.create({
        ...bound,
        id: newUlid(),
        owner: caller.grant.owner,
        session: caller.sessionId,
        callId: base.callId,
        args: ctx.args,
        rule: ruleLabel(decision.rule) ?? '',
        message: decision.message,
        spec: decision.approval,
        now: services.now(),
        ...(task ? { tasked: true } : {}),
      });
      if (created.kind === 'too_many_pending') {
        return refuse({
          reason: 'too_many_pending',
          message:
            `grant ${caller.grant.id} already has ${created.pending} calls waiting for approval (max_pending ` +
            `${decision.approval.maxPending}); wait for a reviewer to decide them, then call again.`,
          rule: decision.approval.rule,
        });
      }
      record = await approvals.store.get(created.id);
      if (!record) return refuse(STORE_UNAVAILABLE);
      if (created.kind === 'created') {
        parkedHere = true;
        const parked = await announce(ctx, record);
        if (parked) return parked;
      }
    }
    // A task waits for an approval whose outcome is ahead (new, or the identical call's: pending, or approved
    // and not finished); one whose outcome is known is answered below, at once, and becomes a settled task.
    const attached = task
      ? parkedHere && record.tasked
        ? 'pending'
        : await approvals.store.attachTask(record.id, services.now())
      : 'decided';
    if (attached === 'approved') await approvals.executions.enqueue(record.id).catch(() => undefined);
    if (task && attached !== 'decided') {
      base.approvalId = record.id;
      const parked = record;
      return await new GatewayTasks(services)
        .forApproval(caller, parked, task.ttl)
        .catch(async (error: unknown) => {
          // No task to report to: an approval parked by this call is withdrawn rather than left to run for nobody.
          if (parkedHere)
            await approvals.desk
              .cancel(parked.id, 'gateway', 'the task could not be stored')
              .catch(() => false);
          throw error;
        });
    }
  } catch (error) {
    if (!(error instanceof ApprovalStoreUnavailableError) && !isTaskStoreError(error)) throw error;
    return refuse(STORE_UNAVAILABLE);
  }

  // Whatever this request is answered with, the trail links it to the approval.
  base.approvalId = record.id;
  const outcome = await approvals.parking.wait({
    id: record.id,
    // A task request never holds: its outcome is known by now (see above).
    holdMs: !task && record.status === 'pending' ? holdMs(decision) : 0,
    signal: ctx.call.signal,
    sessionSignal: ctx.call.sessionSignal ?? ctx.call.signal,
    ...(ctx.call.sendProgress ? { sendProgress: ctx.call.sendProgress } : {}),
    execute: (approved) => runApproved(ctx, approved, subject),
  });
  return answer(ctx, record, outcome);
}

async function checkLimits(
  services: GatewayServices,
  limits: LimitSpec[],
  subject: LimitSubject,
): Promise<{ detail: RefusalDetail; counters: CounterUse[] } | undefined> {
  try {
    const full = await services.limits.check(limits, subject, services.now());
    return full ? { detail: rateLimited(full), counters: [full.counter] } : undefined;
  } catch (error) {
    if (!(error instanceof LimitStoreUnavailableError)) throw error;
    return { detail: STORE_UNAVAILABLE, counters: [] };
  }
}

/** Audits the request and queues the Slack message and the expiry; on failure cancels it (fail closed). */
async function announce(ctx: ApprovalCall, record: ApprovalRecord): Promise<CallToolResult | undefined> {
  const { services } = ctx;
  const approvals = services.approvals;
  const where =
    record.channel && approvals.slack
      ? `reviewers asked in Slack channel ${record.channel}`
      : 'reviewers asked through the approvals API';
  try {
    await services.audit.append(
      approvalAudit(record, services.now(), {
        decision: 'pending',
        reason: 'approval_requested',
        message: `${record.message}; ${where}; expires ${new Date(record.expiresAt).toISOString()}`,
        keepArguments: services.config.raw.audit.keep_arguments,
      }),
    );
  } catch {
    services.metrics.auditFailures.inc();
    await approvals.store
      .transition(
        record.id,
        'cancel',
        { id: 'gateway', name: 'gateway' },
        'audit unavailable',
        services.now(),
      )
      .catch(() => undefined);
    return ctx.refuse({
      reason: 'audit_unavailable',
      message:
        'the audit trail cannot be written (Redis cannot be reached), so no call is allowed; try again shortly.',
    });
  }
  services.metrics.approvals.inc({ server: record.server, step: 'requested' });
  try {
    await approvals.jobs.parked(record);
  } catch (error) {
    services.logger.error(
      { err: (error as Error).message, approvalId: record.id },
      'approval queue unavailable; cancelling',
    );
    await approvals.desk
      .cancel(record.id, 'gateway', 'the approval queue is unavailable')
      .catch(() => undefined);
    return ctx.refuse(STORE_UNAVAILABLE);
  }
  return undefined;
}

async function runApproved(
  ctx: ApprovalCall,
  record: ApprovalRecord,
  subject: LimitSubject,
): Promise<Execution> {
  return executeApproved({
    services: ctx.services,
    base: { ...ctx.base, callId: record.callId, approvalId: record.id },
    subject,
    upstream: async () => ({
      connection: ctx.connection,
      upstreamTask: ctx.upstreamTaskSupport === 'required',
    }),
    params: { ...withoutTask(ctx.call.params), name: ctx.upstreamTool },
    waitSignal: ctx.call.sessionSignal ?? ctx.call.signal,
    callSignal: ctx.call.sessionSignal ?? ctx.call.signal,
    claimant: ctx.services.approvals.processId,
    record,
  });
}

function pendingAnswer(record: ApprovalRecord, slackOn: boolean): CallToolResult {
  if (record.status === 'approved') {
    return {
      content: [
        {
          type: 'text',
          text: `Approved (id ${record.id}) by ${record.decidedByName || record.decidedBy || 'a reviewer'}; the call is running upstream. Call the same tool with the same arguments again for its result.`,
        },
      ],
      _meta: { [APPROVAL_META_KEY]: { id: record.id, status: 'approved', execution: record.execution } },
    };
  }
  const where =
    record.channel && slackOn
      ? `a reviewer has been asked in Slack channel ${record.channel}`
      : 'a reviewer has been asked (through the approvals API or `countersign approvals`)';
  const votes = record.quorum > 1 ? ` (${record.votes} of ${record.quorum} approvals so far)` : '';
  return {
    content: [
      {
        type: 'text',
        text:
          `Approval pending (id ${record.id}): ${where}${votes}. The call has not run. Call the same tool with the ` +
          `same arguments again for the outcome; the approval expires at ${new Date(record.expiresAt).toISOString()}.`,
      },
    ],
    _meta: {
      [APPROVAL_META_KEY]: {
        id: record.id,
        status: 'pending',
        channel: slackOn ? (record.channel ?? null) : null,
        expiresAt: new Date(record.expiresAt).toISOString(),
        votes: record.votes,
        quorum: record.quorum,
      },
    },
  };
}

async function answer(
  ctx: ApprovalCall,
  record: ApprovalRecord,
  outcome: WaitOutcome,
): Promise<CallToolResult> {
  const { services } = ctx;
  switch (outcome.kind) {
    case 'result':
      return outcome.result;
    case 'pending':
      return pendingAnswer(outcome.record, services.approvals.slack !== undefined);
    case 'abandoned':
      // Nobody to tell (the client left, or this process is stopping): no decision was made, none is audited.
      return pendingAnswer(record, services.approvals.slack !== undefined);
    case 'refused':
      // Told once: the next identical call asks again.
      await services.approvals.store.unbind(outcome.record).catch(() => undefined);
      return ctx.refuse(refusedDetail(outcome.record, ctx.decision.rule));
    case 'consumed': {
      // The record as it is now (the one the wait saw may predate the run): what became of the call.
      const now = (await services.approvals.store.get(record.id).catch(() => undefined)) ?? outcome.record;
      return ctx.refuse({ reason: 'approval_used', message: usedMessage(now) });
    }
    case 'gone':
      return ctx.refuse({
        reason: 'approval_gone',
        message: `approval ${record.id} no longer exists; call again to ask for a new one.`,
      });
    case 'unavailable':
      return ctx.refuse(STORE_UNAVAILABLE);
  }
}

/** Why an approval cannot be used again, saying what became of its call (ran, refused, interrupted). */
function usedMessage(record: ApprovalRecord): string {
  const where =
    `The audit trail has the call's events with this approval id ` +
    `(countersign audit query --tool ${JSON.stringify(record.tool)}). Call again to ask for a new approval.`;
  if (record.outcome === 'refused')
    return `approval ${record.id} was already used: the approved call was refused before it ran (the policy or grant in force changed), and another request was told. ${where}`;
  if (record.outcome === 'interrupted')
    return `approval ${record.id} was already used: the approved call was interrupted while it ran and was not run again; another request was told. ${where}`;
  const to = record.tasked ? 'the task that waits for it' : 'another request';
  return `approval ${record.id} was already used: the approved call ran once and its result was delivered to ${to}; it is not handed out twice. ${where}`;
}
