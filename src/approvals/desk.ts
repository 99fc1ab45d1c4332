/**
 * Where people decide: Slack clicks and the approvals API both come here. Resolves the reviewer to a person
 * (people.ts) and checks them (reviewers.ts), runs the one atomic transition with the person's key (one person,
 * one vote), audits the step and queues the Slack message's redraw. Nothing else changes status.
 */
import type { AuditEvent } from '../audit/event.js';
import { approvalAudit } from './audit.js';
import type { ApprovalJobs } from './jobs.js';
import { IdentityUnknownError, normaliseIdentifier } from './people.js';
import type { Person, PersonResolver } from './people.js';
import type { ApprovalRecord, ApprovalStatus } from './record.js';
import { checkReviewer } from './reviewers.js';
import type { GroupMembers, Reviewer, ReviewerRefusal, Voter } from './reviewers.js';
import type { ApprovalStore } from './store.js';

export type DeskAnswer =
  | { ok: true; status: ApprovalStatus; votes: number; message: string; record: ApprovalRecord }
  | {
      ok: false;
      code: 'unknown' | ReviewerRefusal | 'already_decided' | 'already_voted';
      message: string;
      record?: ApprovalRecord;
    };

export interface DeskOptions {
  store: ApprovalStore;
  jobs: ApprovalJobs;
  /** Audit writes that must land (fail closed: a person's decision is not applied unaudited). */
  audit: (event: AuditEvent) => Promise<void>;
  groupMembers: GroupMembers;
  /** Who is behind a reviewer's or a grant owner's identifier (fails closed: see people.ts). */
  people: PersonResolver;
  /** After an approval reaches its quorum (e.g. queue the background run a task waits for). */
  onApproved?: (record: ApprovalRecord) => Promise<void>;
  /**
   * The reviewers the policy in force lists for this approval's call, when it still asks a person; undefined
   * when it does not say (the approval's own list then stands: a loosening never skips a decision asked for).
   * A reviewer the approval was asked of but a reload removed can no longer decide.
   */
  reviewersInForce?: (record: ApprovalRecord) => readonly string[] | undefined;
  now: () => number;
}

/** Who acted, for the audit trail: the identifier they acted under, their display name, and their person. */
export function reviewerLabel(reviewer: Reviewer, person?: Person): string {
  const shown =
    reviewer.name && reviewer.name !== reviewer.id ? `${reviewer.id} (${reviewer.name})` : reviewer.id;
  // The person is named when it says more than the identifier itself ("bob" is name:bob).
  const plain = [`name:${reviewer.id}`, `email:${normaliseIdentifier(reviewer.id)}`];
  return person && !plain.includes(person.key) ? `${shown} as ${person.key}` : shown;
}

/** Whether a reviewer may take a step, and if so, the person their vote counts for. */
export type Vetting =
  { ok: true; voter: Voter } | { ok: false; reason: ReviewerRefusal; message: string; label: string };

export function alreadyDecidedText(status: ApprovalStatus, name: string, at: number): string {
  const when = new Date(at).toISOString();
  if (status === 'expired') return `already expired at ${when}; it was not executed`;
  return `already ${status}${name ? ` by ${name}` : ''} at ${when}`;
}

export class ApprovalDesk {
  constructor(private readonly options: DeskOptions) {}

  async decide(
    id: string,
    verdict: 'approve' | 'reject',
    reviewer: Reviewer,
    reason = '',
  ): Promise<DeskAnswer> {
    const { store, now } = this.options;
    const record = await store.get(id);
    if (!record)
      return {
        ok: false,
        code: 'unknown',
        message: `no approval with id ${JSON.stringify(id.slice(0, 80))}`,
      };
    if (record.status !== 'pending') {
      return {
        ok: false,
        code: 'already_decided',
        message: alreadyDecidedText(
          record.status,
          record.decidedByName || record.decidedBy || '',
          record.decidedAt ?? record.expiresAt,
        ),
        record,
      };
    }
    const vetting = await this.vet(record, verdict, reviewer);
    if (!vetting.ok) {
      await this.refused(record, verdict, vetting.label, vetting.message);
      return { ok: false, code: vetting.reason, message: vetting.message, record };
    }
    const who = vetting.voter;
    // The vote counts for the person, whatever identifier they used: one person, one vote.
    const result = await store.transition(
      id,
      verdict,
      { id: who.id, name: who.name || who.id },
      reason.slice(0, 1000),
      now(),
      who.person.key,
      // Fail safe for quorum: a click's handle, like every identifier of the person, marks them as having voted.
      [...who.person.identifiers, who.id, ...(who.name ? [who.name] : [])],
    );
    switch (result.kind) {
      case 'unknown':
        return {
          ok: false,
          code: 'unknown',
          message: `no approval with id ${JSON.stringify(id.slice(0, 80))}`,
        };
      case 'already_decided':
        return {
          ok: false,
          code: 'already_decided',
          message: alreadyDecidedText(result.status, result.name || result.by, result.at),
          record,
        };
      case 'already_voted': {
        // Audited: a second vote under another identifier is how one person would try to reach a quorum alone.
        const message = `you have already approved this (${result.votes} of ${record.quorum} approvals)`;
        await this.refused(
          record,
          verdict,
          reviewerLabel(who, who.person),
          `${message}: this person, or someone sharing an identifier or Slack handle with them, voted already`,
        );
        return { ok: false, code: 'already_voted', message, record };
      }
      case 'not_due':
        return { ok: false, code: 'already_decided', message: 'nothing changed', record };
      case 'expired_now': {
        // The click came after the expiry time: it expired the approval; the expiry's effects follow here.
        await this.options.jobs.afterExpiry(id);
        return {
          ok: false,
          code: 'already_decided',
          message: alreadyDecidedText('expired', '', record.expiresAt),
          record,
        };
      }
      default:
        break;
    }
    const current = (await store.get(id)) ?? record;
    const status = current.status;
    const message =
      result.kind === 'vote_counted'
        ? `approval counted: ${result.votes} of ${record.quorum}`
        : status === 'expired'
          ? alreadyDecidedText('expired', '', current.expiresAt)
          : `${status} by ${who.name || who.id}`;
    await this.options.audit(
      approvalAudit(current, now(), {
        decision: status === 'approved' ? 'allow' : status === 'pending' ? 'pending' : 'deny',
        reason: result.kind === 'vote_counted' ? 'approval_vote' : status,
        message: status === 'rejected' && reason ? `rejected: ${reason.slice(0, 1000)}` : message,
        reviewer: reviewerLabel(who, who.person),
      }),
    );
    if (status === 'approved') await this.options.onApproved?.(current);
    await this.options.jobs.decided(current);
    if (status === 'expired') return { ok: false, code: 'already_decided', message, record: current };
    return { ok: true, status, votes: current.votes, message, record: current };
  }

  /**
   * May this reviewer take this step on this approval? Resolves them to a person (fails closed: an identity
   * that cannot be established is refused) and applies the reviewer rules. Writes nothing.
   */
  async vet(record: ApprovalRecord, verdict: 'approve' | 'reject', reviewer: Reviewer): Promise<Vetting> {
    const { people } = this.options;
    let person: Person;
    try {
      person = await people.resolve(reviewer.id);
    } catch (error) {
      if (!(error instanceof IdentityUnknownError)) throw error;
      return {
        ok: false,
        reason: 'identity_unknown',
        message: `${error.message}, so your ${verdict === 'approve' ? 'approval' : 'rejection'} does not count; nothing changed, try again shortly`,
        label: reviewerLabel(reviewer),
      };
    }
    const voter: Voter = { ...reviewer, person };
    // Tightening applies at once: only reviewers listed both when it was asked and now may decide.
    const inForce = this.options.reviewersInForce?.(record);
    const listed = inForce
      ? { ...record, reviewers: record.reviewers.filter((r) => inForce.includes(r)) }
      : record;
    const check = await checkReviewer(listed, voter, verdict, {
      groupMembers: this.options.groupMembers,
      ownerPerson: (owner) => people.resolve(owner),
    });
    if (!check.ok) return { ...check, label: reviewerLabel(reviewer, person) };
    return { ok: true, voter };
  }

  /**
   * Audits a refused attempt to decide (`reviewer_refused`) on the approval it named, if there is one: an
   * operator sees who tried what, and why it changed nothing.
   */
  async refuse(id: string, verdict: 'approve' | 'reject', label: string, why: string): Promise<void> {
    const record = await this.options.store.get(id);
    if (record) await this.refused(record, verdict, label, why);
  }

  private async refused(
    record: ApprovalRecord,
    verdict: 'approve' | 'reject',
    label: string,
    why: string,
  ): Promise<void> {
    await this.options.audit(
      approvalAudit(record, this.options.now(), {
        decision: 'deny',
        reason: 'reviewer_refused',
        message: `${label} tried to ${verdict}: ${why}`,
        reviewer: label,
      }),
    );
  }

  /** Cancels a pending approval (the agent's task was cancelled, or an operator withdrew it). */
  async cancel(id: string, by: string, reason: string): Promise<boolean> {
    const result = await this.options.store.transition(
      id,
      'cancel',
      { id: by, name: by },
      reason,
      this.options.now(),
    );
    if (result.kind === 'expired_now') await this.options.jobs.afterExpiry(id);
    if (result.kind !== 'decided') return false;
    const record = await this.options.store.get(id);
    if (record) {
      await this.options.audit(
        approvalAudit(record, this.options.now(), {
          decision: 'deny',
          reason: 'cancelled',
          message: reason,
          reviewer: by,
        }),
      );
      await this.options.jobs.decided(record);
    }
    return true;
  }
}
