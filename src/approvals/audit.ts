import type { AuditEvent } from '../audit/event.js';
import { auditedArguments } from '../audit/args.js';
import { newUlid } from '../ids/ulid.js';
import type { ApprovalRecord } from './record.js';

/** The audit fields that name the parked call an approval is bound to (every event about it carries them). */
export function callEventFields(
  record: ApprovalRecord,
  keepArguments: boolean,
): Pick<
  AuditEvent,
  | 'callId'
  | 'grant'
  | 'owner'
  | 'session'
  | 'server'
  | 'tool'
  | 'argsSha256'
  | 'args'
  | 'argsRedacted'
  | 'approvalId'
> {
  return {
    callId: record.callId,
    grant: record.grant,
    owner: record.owner,
    session: record.session,
    server: record.server,
    tool: record.tool,
    argsSha256: record.argsSha256,
    // Bounded: the whole arguments stay in the approval record only (argsSha256 identifies them).
    ...auditedArguments(record.args, keepArguments),
    approvalId: record.id,
  };
}

/** An `approval` audit event about one approval, carrying the call it is bound to. */
export function approvalAudit(
  record: ApprovalRecord,
  time: number,
  step: {
    decision: AuditEvent['decision'];
    reason: string;
    message: string;
    reviewer?: string;
    keepArguments?: boolean;
  },
): AuditEvent {
  return {
    id: newUlid(),
    time: new Date(time).toISOString(),
    type: 'approval',
    ...callEventFields(record, step.keepArguments ?? false),
    decision: step.decision,
    reason: step.reason,
    rule: record.rule,
    message: step.message,
    counters: [],
    ...(step.reviewer ? { reviewer: step.reviewer } : {}),
  };
}
