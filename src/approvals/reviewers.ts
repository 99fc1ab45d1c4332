import { IdentityUnknownError, couldBeSamePerson, normaliseIdentifier } from './people.js';
import type { Person } from './people.js';
import type { ApprovalRecord } from './record.js';

/**
 * Who acted, as they presented themselves: the identifier (a Slack user id U…, or the name given to the
 * approvals API) and a display name (for a Slack click, the handle it carried, which its owner can change).
 */
export interface Reviewer {
  id: string;
  name: string;
}

/** A reviewer resolved to the person behind them (see people.ts). */
export interface Voter extends Reviewer {
  person: Person;
}

export type ReviewerRefusal = 'not_reviewer' | 'self_approval' | 'membership_unknown' | 'identity_unknown';

export type ReviewerCheck = { ok: true } | { ok: false; reason: ReviewerRefusal; message: string };

/** Members of a Slack user group (S…); throws when they cannot be found out. */
export type GroupMembers = (groupId: string) => Promise<string[]>;

export interface ReviewerRules {
  groupMembers: GroupMembers;
  /** The person who owns a grant; throws IdentityUnknownError when that cannot be established. */
  ownerPerson: (owner: string) => Promise<Person>;
}

/** A Slack user-group entry (S…) in a reviewers list: any member may decide. */
export const isGroup = (entry: string): boolean => /^S[A-Z0-9]+$/.test(entry);

async function listed(
  reviewers: readonly string[],
  person: Person,
  groupMembers: GroupMembers,
): Promise<ReviewerCheck> {
  // A listed entry names a person: any identifier established for the voter may match it. The handle a click
  // carried is not among them (anyone can take a free handle), so it never lists anybody.
  if (reviewers.some((entry) => !isGroup(entry) && person.identifiers.has(normaliseIdentifier(entry))))
    return { ok: true };
  let unknownGroup: string | undefined;
  for (const group of reviewers.filter(isGroup)) {
    try {
      if ((await groupMembers(group)).some((member) => person.identifiers.has(member))) return { ok: true };
    } catch {
      unknownGroup = group;
    }
  }
  if (unknownGroup) {
    return {
      ok: false,
      reason: 'membership_unknown',
      message: `could not check membership of user group ${unknownGroup} (Slack unavailable); nothing changed, try again shortly`,
    };
  }
  return {
    ok: false,
    reason: 'not_reviewer',
    message: 'you are not a reviewer for this approval; nothing changed',
  };
}

/**
 * May this person decide this approval? They must be listed (directly or through a user group), and unless
 * the policy allows self-approval, the owner of the grant that made the call cannot approve it: owner and
 * voter are compared as people, whatever form either is written in. When the owner's identity cannot be
 * established, no approval counts (it could be the owner's own); a rejection still does.
 */
export async function checkReviewer(
  record: Pick<ApprovalRecord, 'reviewers' | 'owner' | 'allowSelfApproval'>,
  voter: Voter,
  verdict: 'approve' | 'reject',
  rules: ReviewerRules,
): Promise<ReviewerCheck> {
  const allowed = await listed(record.reviewers, voter.person, rules.groupMembers);
  if (!allowed.ok || verdict !== 'approve' || record.allowSelfApproval) return allowed;
  const selfApproval: ReviewerCheck = {
    ok: false,
    reason: 'self_approval',
    message: `you own the grant that made this call (${record.owner}), so you cannot approve it; another reviewer must`,
  };
  // Written the same way (or a look-alike handle): no lookup needed to refuse.
  const asWritten: Person = {
    key: `name:${record.owner}`,
    identifiers: new Set([normaliseIdentifier(record.owner)]),
  };
  if (couldBeSamePerson(asWritten, voter.person, [voter.name])) return selfApproval;
  let owner: Person;
  try {
    owner = await rules.ownerPerson(record.owner);
  } catch (error) {
    if (!(error instanceof IdentityUnknownError)) throw error;
    return {
      ok: false,
      reason: 'identity_unknown',
      message: `${error.message}: the grant owner's identity is needed to rule out self-approval, so this approval does not count; nothing changed, try again shortly`,
    };
  }
  return couldBeSamePerson(owner, voter.person, [voter.name]) ? selfApproval : { ok: true };
}
