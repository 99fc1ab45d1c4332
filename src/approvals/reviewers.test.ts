import { describe, expect, it } from 'vitest';
import { checkReviewer } from './reviewers.js';

const record = {
  reviewers: ['UALICE', 'SPLATFORM', 'ops'],
  owner: 'olga@example.com',
  allowSelfApproval: false,
};
const groups = async (group: string) => (group === 'SPLATFORM' ? ['UCAROL', 'UOLGA'] : []);

describe('checkReviewer', () => {
  it('a listed user, a member of a listed group and a listed local name may decide', async () => {
    expect(await checkReviewer(record, { id: 'UALICE', name: 'alice' }, 'approve', groups)).toEqual({
      ok: true,
    });
    expect(await checkReviewer(record, { id: 'UCAROL', name: 'carol' }, 'approve', groups)).toEqual({
      ok: true,
    });
    expect(await checkReviewer(record, { id: 'ops', name: 'ops' }, 'reject', groups)).toEqual({ ok: true });
  });

  it('anyone else may not, and a group id is not a person', async () => {
    expect(await checkReviewer(record, { id: 'UMALLORY', name: 'mallory' }, 'approve', groups)).toMatchObject(
      { ok: false, reason: 'not_reviewer' },
    );
    expect(await checkReviewer(record, { id: 'SPLATFORM', name: 'x' }, 'approve', groups)).toMatchObject({
      ok: false,
      reason: 'not_reviewer',
    });
  });

  it('the grant owner cannot approve (matched by email, case-insensitively) but may reject', async () => {
    const olga = { id: 'UOLGA', name: 'olga', email: 'Olga@Example.com' };
    expect(await checkReviewer(record, olga, 'approve', groups)).toMatchObject({
      ok: false,
      reason: 'self_approval',
    });
    expect(await checkReviewer(record, olga, 'reject', groups)).toEqual({ ok: true });
    expect(await checkReviewer({ ...record, allowSelfApproval: true }, olga, 'approve', groups)).toEqual({
      ok: true,
    });
  });

  it('when group membership cannot be checked, nothing is allowed and the reason says so', async () => {
    const down = async () => {
      throw new Error('slack down');
    };
    expect(await checkReviewer(record, { id: 'UCAROL', name: 'carol' }, 'approve', down)).toMatchObject({
      ok: false,
      reason: 'membership_unknown',
    });
    // A directly listed reviewer does not depend on Slack.
    expect(await checkReviewer(record, { id: 'UALICE', name: 'alice' }, 'approve', down)).toEqual({
      ok: true,
    });
  });
});
