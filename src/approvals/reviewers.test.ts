import { describe, expect, it } from 'vitest';
import { PeopleDirectory, PersonResolver } from './people.js';
import { checkReviewer } from './reviewers.js';
import type { ReviewerRules, Voter } from './reviewers.js';

const record = {
  reviewers: ['UALICE', 'SPLATFORM', 'ops', 'dora@example.com'],
  owner: 'olga@example.com',
  allowSelfApproval: false,
};
const emails: Record<string, string> = {
  UALICE: 'alice@example.com',
  UCAROL: 'carol@example.com',
  UOLGA: 'Olga@Example.com',
  UMALLORY: 'mallory@example.com',
  UDORA: 'dora@example.com',
};
const people = new PersonResolver(
  new PeopleDirectory([{ id: 'pat', identifiers: ['UPAT', 'pat', 'pat@example.com'] }]),
  {
    slackUserEmail: async (id) => {
      const email = emails[id];
      if (!email) throw new Error('user_not_found');
      return email;
    },
  },
);
const rules: ReviewerRules = {
  groupMembers: async (group) => (group === 'SPLATFORM' ? ['UCAROL', 'UOLGA', 'UPAT'] : []),
  ownerPerson: (owner) => people.resolve(owner),
};
const voter = async (id: string, name = id): Promise<Voter> => ({
  id,
  name,
  person: await people.resolve(id),
});

describe('checkReviewer', () => {
  it('a listed user, a member of a listed group, a listed local name and a listed email may decide', async () => {
    expect(await checkReviewer(record, await voter('UALICE', 'alice'), 'approve', rules)).toEqual({
      ok: true,
    });
    expect(await checkReviewer(record, await voter('UCAROL', 'carol'), 'approve', rules)).toEqual({
      ok: true,
    });
    expect(await checkReviewer(record, await voter('ops'), 'reject', rules)).toEqual({ ok: true });
    // Listed by email, clicking in Slack: the same person.
    expect(await checkReviewer(record, await voter('UDORA', 'dora'), 'approve', rules)).toEqual({ ok: true });
    // Named to the API by a directory name: the directory says she is UPAT, a member of the listed group.
    expect(await checkReviewer(record, await voter('pat'), 'approve', rules)).toEqual({ ok: true });
  });

  it('anyone else may not; a group id is not a person; a handle lists nobody', async () => {
    expect(await checkReviewer(record, await voter('UMALLORY', 'mallory'), 'approve', rules)).toMatchObject({
      ok: false,
      reason: 'not_reviewer',
    });
    expect(await checkReviewer(record, await voter('SPLATFORM', 'x'), 'approve', rules)).toMatchObject({
      ok: false,
      reason: 'not_reviewer',
    });
    // Mallory renamed herself "ops" in Slack: the handle she carries is not who she is.
    expect(await checkReviewer(record, await voter('UMALLORY', 'ops'), 'approve', rules)).toMatchObject({
      ok: false,
      reason: 'not_reviewer',
    });
  });

  it('the grant owner cannot approve, whatever form owner and voter are written in, but may reject', async () => {
    const olga = await voter('UOLGA', 'olga');
    expect(await checkReviewer(record, olga, 'approve', rules)).toMatchObject({
      ok: false,
      reason: 'self_approval',
    });
    expect(await checkReviewer(record, olga, 'reject', rules)).toEqual({ ok: true });
    expect(await checkReviewer({ ...record, allowSelfApproval: true }, olga, 'approve', rules)).toEqual({
      ok: true,
    });
    // Owner written as a Slack id, voter named by email (and the other way round).
    const byId = { ...record, reviewers: ['SPLATFORM', 'olga@example.com'], owner: 'UOLGA' };
    expect(await checkReviewer(byId, await voter('OLGA@example.com'), 'approve', rules)).toMatchObject({
      reason: 'self_approval',
    });
    // Owner written as a directory name, voter a Slack id the directory lists.
    const byName = { ...record, owner: 'pat' };
    expect(await checkReviewer(byName, await voter('UPAT', 'p'), 'approve', rules)).toMatchObject({
      reason: 'self_approval',
    });
    // A look-alike handle is refused rather than let through.
    const byHandle = { ...record, owner: 'carol' };
    expect(await checkReviewer(byHandle, await voter('UCAROL', 'Carol'), 'approve', rules)).toMatchObject({
      reason: 'self_approval',
    });
  });

  it("when the owner's identity cannot be established, no approval counts (a rejection does)", async () => {
    const unknownOwner = { ...record, owner: 'UGONE' };
    const alice = await voter('UALICE', 'alice');
    const check = await checkReviewer(unknownOwner, alice, 'approve', rules);
    expect(check).toMatchObject({ ok: false, reason: 'identity_unknown' });
    expect(check.ok ? '' : check.message).toMatch(/the identity of UGONE could not be established/);
    expect(await checkReviewer(unknownOwner, alice, 'reject', rules)).toEqual({ ok: true });
    // The same Slack id as the owner needs no lookup to be refused.
    const owner: Voter = {
      id: 'UGONE',
      name: 'gone',
      person: { key: 'name:x', identifiers: new Set(['UGONE']) },
    };
    expect(
      await checkReviewer({ ...unknownOwner, reviewers: ['UGONE'] }, owner, 'approve', rules),
    ).toMatchObject({ reason: 'self_approval' });
  });

  it('when group membership cannot be checked, nothing is allowed and the reason says so', async () => {
    const down = {
      ...rules,
      groupMembers: async () => {
        throw new Error('slack down');
      },
    };
    expect(await checkReviewer(record, await voter('UCAROL', 'carol'), 'approve', down)).toMatchObject({
      ok: false,
      reason: 'membership_unknown',
    });
    // A directly listed reviewer does not depend on Slack's groups.
    expect(await checkReviewer(record, await voter('UALICE', 'alice'), 'approve', down)).toEqual({
      ok: true,
    });
  });
});
