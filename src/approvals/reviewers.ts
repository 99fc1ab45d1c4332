import type { ApprovalRecord } from './record.js';

/** The person deciding: a Slack user (id U…, their handle and, when known, email) or a local reviewer name. */
export interface Reviewer {
  id: string;
  name: string;
  email?: string;
}

export type ReviewerCheck =
  | { ok: true }
  | { ok: false; reason: 'not_reviewer' | 'self_approval' | 'membership_unknown'; message: string };

/** Members of a Slack user group (S…); throws when they cannot be found out. */
export type GroupMembers = (groupId: string) => Promise<string[]>;

const isGroup = (entry: string): boolean => /^S[A-Z0-9]+$/.test(entry);

/**
 * May this person decide this approval? They must be listed (directly or through a user group), and unless
 * the policy allows self-approval, the owner of the grant that made the call cannot approve it (matched on
 * user id, email and handle: refusing a look-alike is safer than letting an owner through).
 */
export async function checkReviewer(
  record: Pick<ApprovalRecord, 'reviewers' | 'owner' | 'allowSelfApproval'>,
  reviewer: Reviewer,
  verdict: 'approve' | 'reject',
  groupMembers: GroupMembers,
): Promise<ReviewerCheck> {
  let listed = record.reviewers.includes(reviewer.id) && !isGroup(reviewer.id);
  let unknownGroup: string | undefined;
  for (const group of record.reviewers.filter(isGroup)) {
    if (listed) break;
    try {
      listed = (await groupMembers(group)).includes(reviewer.id);
    } catch {
      unknownGroup = group;
    }
  }
  if (!listed) {
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
  const owner = record.owner.toLowerCase();
  const isOwner = [reviewer.id, reviewer.name, reviewer.email]
    .filter((v): v is string => typeof v === 'string' && v !== '')
    .some((v) => v.toLowerCase() === owner);
  if (verdict === 'approve' && isOwner && !record.allowSelfApproval) {
    return {
      ok: false,
      reason: 'self_approval',
      message: `you own the grant that made this call (${record.owner}), so you cannot approve it; another reviewer must`,
    };
  }
  return { ok: true };
}
