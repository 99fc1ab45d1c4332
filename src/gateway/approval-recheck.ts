/**
 * The policy in force when an approved call runs is the one that decides. Just before an approved call is
 * forwarded (held request, `wait: return` retry or task alike), its grant and the current policy are looked
 * at again: a reload that tightened anything since the call was parked applies to it. A pure function: the
 * caller passes the grant and the policy in force now.
 *
 * Tightening means: the grant is gone (revoked by a reload); the grant has another owner now (self-approval
 * was judged against the owner recorded when the call was parked, so the new owner may have approved it); the
 * policy denies the call now (tool denied or hidden, an argument now fails `require`/`deny_if`, no policy at
 * all); or the rule still asks for a person but with stricter terms than the approval was given under — a
 * reviewer who voted (or a user group) is no longer listed, it needs more approvals, or it no longer allows
 * self-approval. A loosening never skips a decision already asked for: the
 * approval was given (the call is only run once approved), and a policy that now allows the call outright
 * simply runs it under its current rule and limits.
 */
import type { ApprovalRecord } from '../approvals/record.js';
import { isGroup } from '../approvals/reviewers.js';
import { voterTokens } from '../approvals/store.js';
import type { Grant } from '../config/load.js';
import { decide } from '../policy/decide.js';
import type { LimitSpec, Policy, RuleRef } from '../policy/types.js';
import type { RefusalDetail } from './answers.js';

export type Recheck = { ok: true; rule: RuleRef; limits: LimitSpec[] } | { ok: false; detail: RefusalDetail };

type Recorded = Pick<
  ApprovalRecord,
  'id' | 'grant' | 'owner' | 'tool' | 'args' | 'reviewers' | 'quorum' | 'allowSelfApproval'
>;

function refused(record: Recorded, reason: string, why: string, rule?: RuleRef): Recheck {
  return {
    ok: false,
    detail: {
      reason,
      message: `${why}, so the approved call (approval ${record.id}) was not run. Call again to be decided under the policy in force.`,
      ...(rule ? { rule } : {}),
    },
  };
}

/**
 * @param voters the approval's approvers set (person keys and `id:` tokens of every voter's identifiers); when
 * it is known, a removed reviewer entry refuses the call only if a voter carried it (or it is a user group,
 * whose members cannot be told apart here). Unknown, or written before voters left tokens: any removal refuses.
 */
export function recheckApproved(
  record: Recorded,
  grant: Grant | undefined,
  policy: Policy | undefined,
  voters?: ReadonlySet<string>,
): Recheck {
  if (!grant) return refused(record, 'grant_revoked', `grant ${record.grant} no longer exists`);
  if (grant.owner !== record.owner)
    return refused(
      record,
      'grant_changed',
      `grant ${record.grant} has another owner now than when the call was parked`,
    );
  const decision = decide(policy, { tool: record.tool, args: record.args }, { grant });
  if (decision.kind === 'deny') {
    return refused(
      record,
      'policy_changed',
      `the policy in force now denies this call (${decision.message})`,
      decision.rule,
    );
  }
  if (decision.kind === 'require_approval') {
    const now = decision.approval;
    const precise = voters !== undefined && [...voters].some((t) => t.startsWith('id:'));
    const removed = record.reviewers.filter(
      (r) => !now.reviewers.includes(r) && (!precise || isGroup(r) || voters.has(voterTokens([r])[0] ?? '')),
    );
    if (removed.length > 0) {
      return refused(
        record,
        'reviewers_changed',
        `the policy in force no longer lists ${removed.map((r) => JSON.stringify(r)).join(', ')} as reviewer${removed.length > 1 ? 's' : ''} of this call`,
        now.rule,
      );
    }
    if (now.quorum > record.quorum) {
      return refused(
        record,
        'reviewers_changed',
        `the policy in force needs ${now.quorum} approvals for this call; it was approved under a quorum of ${record.quorum}`,
        now.rule,
      );
    }
    if (record.allowSelfApproval && !now.allowSelfApproval) {
      return refused(
        record,
        'reviewers_changed',
        'the policy in force no longer allows self-approval for this call',
        now.rule,
      );
    }
  }
  return { ok: true, rule: decision.rule, limits: decision.limits };
}

/**
 * The reviewers the policy in force lists for an approval's call, when it still asks a person (see
 * DeskOptions.reviewersInForce); undefined when the grant is gone or the policy no longer asks (the call
 * is then refused or run by recheckApproved, and the approval's own list stands for the decision).
 */
export function reviewersInForce(
  record: Pick<ApprovalRecord, 'tool' | 'args'>,
  grant: Grant | undefined,
  policy: Policy | undefined,
): readonly string[] | undefined {
  if (!grant) return undefined;
  const decision = decide(policy, { tool: record.tool, args: record.args }, { grant });
  return decision.kind === 'require_approval' ? decision.approval.reviewers : undefined;
}
