import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../policy/load.js';
import type { Policy } from '../policy/types.js';
import { recheckApproved } from './approval-recheck.js';

const grant = { id: 'deploy-bot', owner: 'olga@example.com' };
const approval = (extra: Record<string, unknown> = {}) => ({
  reviewers: ['alice', 'bob'],
  quorum: 1,
  ...extra,
});
function policy(tools: Record<string, unknown>, extra: Record<string, unknown> = {}): Policy {
  return parsePolicy(JSON.stringify({ version: '1', default: 'deny', tools, ...extra }), 'p.json');
}
/** The approved call as stored: approved under reviewers alice and bob, quorum 1, no self-approval. */
const record = {
  id: '01JAPPROVAL0000000000000000',
  grant: 'deploy-bot',
  owner: 'olga@example.com',
  tool: 'DeleteCluster',
  args: { id: 'prod-1' },
  reviewers: ['alice', 'bob'],
  quorum: 1,
  allowSelfApproval: false,
};
const gated = (extra: Record<string, unknown> = {}): Policy =>
  policy({ DeleteCluster: { action: 'require_approval', approval: approval(extra) } });
const reason = (check: ReturnType<typeof recheckApproved>): string => (check.ok ? 'ok' : check.detail.reason);

describe('recheckApproved: a tightening reload applies to an approved call that has not run', () => {
  it('unchanged policy: runs, under the rule and limits in force now', () => {
    const check = recheckApproved(record, grant, gated());
    expect(check).toMatchObject({ ok: true, rule: { pointer: '/tools/DeleteCluster/action' } });
  });

  it.each<[string, Policy | undefined, string]>([
    ['the tool is denied now', policy({ DeleteCluster: { action: 'deny' } }), 'policy_changed'],
    ['the tool is hidden now', policy({}, { hide: ['Delete*'] }), 'policy_changed'],
    ['the tool is no longer listed under default deny', policy({}), 'policy_changed'],
    [
      'an argument now fails deny_if',
      policy({
        DeleteCluster: {
          action: 'require_approval',
          deny_if: [{ path: 'args.id', op: 'regex', value: '^prod-' }],
          approval: approval(),
        },
      }),
      'policy_changed',
    ],
    [
      'an argument now fails require',
      policy({
        DeleteCluster: {
          action: 'require_approval',
          require: [{ path: 'args.id', op: 'eq', value: 'staging' }],
          approval: approval(),
        },
      }),
      'policy_changed',
    ],
    ['no policy at all any more', undefined, 'policy_changed'],
    ['a reviewer was removed', gated({ reviewers: ['bob'] }), 'reviewers_changed'],
    ['more approvals are needed now', gated({ quorum: 2 }), 'reviewers_changed'],
  ])('%s: refused', (_what, now, expected) => {
    const check = recheckApproved(record, grant, now);
    expect(reason(check)).toBe(expected);
    expect(check.ok ? '' : check.detail.message).toContain(`approval ${record.id}) was not run`);
  });

  it('knowing who voted, removing a reviewer who did not vote leaves the approval standing', () => {
    // bob voted (his person key and identifier tokens are in the approvers set); alice did not.
    const voters = new Set(['name:bob', 'id:bob']);
    expect(reason(recheckApproved(record, grant, gated({ reviewers: ['bob'] }), voters))).toBe('ok');
    expect(reason(recheckApproved(record, grant, gated({ reviewers: ['alice'] }), voters))).toBe(
      'reviewers_changed',
    );
    // A user group removed: who among the voters came through it cannot be told here, so it refuses.
    const withGroup = { ...record, reviewers: ['alice', 'bob', 'S0ONCALL'] };
    expect(reason(recheckApproved(withGroup, grant, gated({ reviewers: ['alice', 'bob'] }), voters))).toBe(
      'reviewers_changed',
    );
    // An approvers set from before voters left identifier tokens: any removal refuses.
    expect(reason(recheckApproved(record, grant, gated({ reviewers: ['bob'] }), new Set(['name:bob'])))).toBe(
      'reviewers_changed',
    );
  });

  it('self-approval withdrawn: refused', () => {
    const check = recheckApproved({ ...record, allowSelfApproval: true }, grant, gated());
    expect(reason(check)).toBe('reviewers_changed');
  });

  it('the grant is gone: refused', () => {
    expect(reason(recheckApproved(record, undefined, gated()))).toBe('grant_revoked');
  });

  it('the grant has another owner now (who may have approved it as a stranger): refused', () => {
    const check = recheckApproved(record, { ...grant, owner: 'mallory@example.com' }, gated());
    expect(reason(check)).toBe('grant_changed');
    expect(check.ok ? '' : check.detail.message).toContain('another owner now');
  });

  it('a loosening never stops an approved call: more reviewers, a lower quorum, or plain allow', () => {
    expect(reason(recheckApproved(record, grant, gated({ reviewers: ['alice', 'bob', 'carol'] })))).toBe(
      'ok',
    );
    expect(reason(recheckApproved({ ...record, quorum: 2 }, grant, gated()))).toBe('ok');
    expect(reason(recheckApproved(record, grant, policy({ DeleteCluster: {} })))).toBe('ok');
  });
});
