import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/schema.js';
import {
  IdentityUnknownError,
  PeopleDirectory,
  PersonResolver,
  couldBeSamePerson,
  normaliseIdentifier,
} from './people.js';
import type { IdentitySource } from './people.js';

/** users.info as a table: an id maps to an email, or to the error Slack would give. */
function slack(table: Record<string, string | Error>): IdentitySource & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    slackUserEmail: async (id) => {
      asked.push(id);
      const found = table[id];
      if (found === undefined) throw new Error('user_not_found');
      if (found instanceof Error) throw found;
      return found;
    },
  };
}

const directory = new PeopleDirectory([
  { id: 'alice', identifiers: ['U0ALICE', 'alice', 'Alice@Example.com', 'alice.smith'] },
  { id: 'carol', identifiers: ['carol@example.com'] },
]);

describe('resolving identifiers to people', () => {
  it('every identifier the directory lists for a person is that person, without asking Slack', async () => {
    const source = slack({});
    const people = new PersonResolver(directory, source);
    for (const identifier of ['U0ALICE', 'alice', 'alice@example.com', 'ALICE@EXAMPLE.COM', 'alice.smith']) {
      expect((await people.resolve(identifier)).key).toBe('person:alice');
    }
    expect(source.asked).toEqual([]);
  });

  it('a Slack id outside the directory is its profile email; an email the directory lists is that person', async () => {
    const people = new PersonResolver(
      directory,
      slack({ U0BOB: 'Bob@Example.com', U0CAROL: 'CAROL@example.com' }),
    );
    const bob = await people.resolve('U0BOB');
    expect(bob.key).toBe('email:bob@example.com');
    expect([...bob.identifiers]).toEqual(['U0BOB', 'bob@example.com']);
    expect((await people.resolve('bob@example.com')).key).toBe('email:bob@example.com');
    expect((await people.resolve('U0CAROL')).key).toBe('person:carol');
  });

  it("a person's directory id is one of their identifiers (an owner or reviewer written as it is that person)", async () => {
    const people = new PersonResolver(
      new PeopleDirectory([
        { id: 'olga', identifiers: ['U0OLGA', 'olga@example.com'] },
        { id: 'quinn@example.com', identifiers: ['U0QUINN'] },
      ]),
      undefined,
    );
    const olga = await people.resolve('olga');
    expect(olga.key).toBe('person:olga');
    expect(couldBeSamePerson(olga, await people.resolve('U0OLGA'))).toBe(true);
    expect((await people.resolve('Quinn@Example.com')).key).toBe('person:quinn@example.com');
    expect([...(await people.resolve('U0QUINN')).identifiers]).toContain('quinn@example.com');
    // An id that is another person's identifier would make "olga" two people: refused, naming both.
    expect(
      () =>
        new PeopleDirectory([
          { id: 'olga', identifiers: ['U0OLGA'] },
          { id: 'oleg', identifiers: ['olga'] },
        ]),
    ).toThrow(/"olga" is listed for both "olga" and "oleg"/);
  });

  it('emails compare ignoring case; Slack ids and local names exactly', async () => {
    const people = new PersonResolver(new PeopleDirectory([]), undefined);
    expect((await people.resolve(' Dave@Example.COM ')).key).toBe('email:dave@example.com');
    expect((await people.resolve('ops')).key).toBe('name:ops');
    expect((await people.resolve('Ops')).key).toBe('name:Ops');
    expect(normaliseIdentifier('UALICE')).toBe('UALICE');
  });

  it('fails closed: a Slack id whose email Slack cannot tell is unknown, never a guess', async () => {
    const people = new PersonResolver(
      directory,
      slack({ U0DOWN: new Error('HTTP 500'), U0NOMAIL: 'not-an-email' }),
    );
    for (const id of ['U0DOWN', 'U0GONE', 'U0NOMAIL']) {
      await expect(people.resolve(id)).rejects.toBeInstanceOf(IdentityUnknownError);
    }
    await expect(people.resolve('U0DOWN')).rejects.toThrow(
      'the identity of U0DOWN could not be established (HTTP 500)',
    );
    const withoutSlack = new PersonResolver(directory, undefined);
    await expect(withoutSlack.resolve('U0BOB')).rejects.toThrow(/Slack is not configured/);
    // ...but the directory still names the people it lists.
    expect((await withoutSlack.resolve('U0ALICE')).key).toBe('person:alice');
    await expect(withoutSlack.resolve('   ')).rejects.toBeInstanceOf(IdentityUnknownError);
  });

  it('one person under two identifiers could be the same; different people could not; handles only refuse', async () => {
    const people = new PersonResolver(directory, slack({ U0BOB: 'bob@example.com' }));
    const viaSlack = await people.resolve('U0BOB');
    const viaEmail = await people.resolve('BOB@example.com');
    expect(couldBeSamePerson(viaSlack, viaEmail)).toBe(true);
    expect(couldBeSamePerson(viaSlack, await people.resolve('alice'))).toBe(false);
    expect(couldBeSamePerson(await people.resolve('bob'), viaSlack)).toBe(false);
    expect(couldBeSamePerson(await people.resolve('bob'), viaSlack, ['Bob'])).toBe(true);
  });
});

describe('the people directory in the config', () => {
  it('names the people listed with a Slack id but no email (their Slack email is unknown to the gateway)', () => {
    const listed = new PeopleDirectory([
      { id: 'alice', identifiers: ['U0ALICE', 'alice'] },
      { id: 'bob', identifiers: ['U0BOB', 'bob@example.com'] },
      { id: 'ops', identifiers: ['ops'] },
      // An id that is an email is their email.
      { id: 'carol@example.com', identifiers: ['U0CAROL'] },
    ]);
    expect(listed.slackPeopleWithoutEmail()).toEqual(['alice']);
  });

  const parse = (people: unknown) => configSchema.safeParse({ servers: { s: { command: 'node' } }, people });

  it('is optional and strict', () => {
    expect(parse(undefined).success).toBe(true);
    expect(parse([{ id: 'alice', identifiers: ['U0ALICE'] }]).success).toBe(true);
    expect(parse([{ id: 'alice', identifiers: [] }]).success).toBe(false);
    expect(parse([{ id: 'alice', identifiers: ['U0ALICE'], admin: true }]).success).toBe(false);
  });

  it('refuses an identifier listed for two people, naming both, and a person id used twice', () => {
    const twice = parse([
      { id: 'alice', identifiers: ['U0ALICE', 'shared@example.com'] },
      { id: 'bob', identifiers: ['Shared@Example.com'] },
    ]);
    expect(twice.success).toBe(false);
    expect(twice.error?.issues[0]).toMatchObject({
      path: ['people', 1, 'identifiers', 0],
      message: 'identifier "Shared@Example.com" is listed for both "alice" and "bob"',
    });
    const sameId = parse([
      { id: 'alice', identifiers: ['a'] },
      { id: 'alice', identifiers: ['b'] },
    ]);
    expect(sameId.error?.issues[0]?.message).toBe('person id "alice" is used twice');
    // A person's id is one of their identifiers: another person listing it is the same clash, in either order.
    for (const people of [
      [
        { id: 'olga', identifiers: ['U0OLGA'] },
        { id: 'oleg', identifiers: ['Olga'] },
      ],
      [
        { id: 'oleg', identifiers: ['olga'] },
        { id: 'olga', identifiers: ['U0OLGA'] },
      ],
    ]) {
      const clash = parse(people);
      expect(clash.success).toBe(false);
      expect(clash.error?.issues[0]?.message).toContain('is listed for both "olga" and "oleg"');
    }
    expect(
      () =>
        new PeopleDirectory([
          { id: 'a', identifiers: ['x@example.com'] },
          { id: 'b', identifiers: ['X@example.com'] },
        ]),
    ).toThrow(/listed for both "a" and "b"/);
  });
});
