/**
 * Reviewers are people, not identifiers. A vote or a grant owner arrives as one identifier (a Slack user id, an
 * email, a name given to the approvals API/CLI); before it counts it is resolved to a person, and the person's
 * key is what quorum counts and what self-approval compares.
 *
 * How an identifier becomes a person (in this order):
 *   1. the people directory names it (a person's id
 *      or one of their identifiers)                   → person:<directory id>
 *   2. a Slack user id (U…/W…): Slack's users.info must
 *      tell its profile email (fail closed: no email,
 *      an error, a timeout or a rate limit = unknown)  → the directory person listing that email, else email:<email>
 *   3. an email                                        → email:<email, lower case>
 *   4. anything else: a local name                     → name:<name>
 * Emails compare ignoring case; Slack ids and names compare exactly. The directory is believed as written: the
 * gateway does not ask Slack about a Slack id the directory names (that is what the directory is for), so list
 * a person's email in their entry when they have one.
 */
import type { PersonConfig } from '../config/schema.js';

/** A person's canonical key: what goes into an approval's approvers set (one vote per key). */
export type PersonKey = `person:${string}` | `email:${string}` | `name:${string}`;

export interface Person {
  key: PersonKey;
  /** Every identifier established for this person (normalised: see normaliseIdentifier). */
  identifiers: ReadonlySet<string>;
}

/** Where the identity of a Slack user comes from (the Slack adapter implements it with users.info). */
export interface IdentitySource {
  /**
   * The email on a Slack user's profile. Rejects when Slack cannot tell it: an error, a timeout, a rate
   * limit, no such user, or a profile without an email. Never resolves with a guess.
   */
  slackUserEmail(userId: string): Promise<string>;
}

/** The identity behind an identifier could not be established; a vote that depends on it does not count. */
export class IdentityUnknownError extends Error {
  readonly code = 'countersign.approvals.identity_unknown';
  constructor(
    readonly identifier: string,
    why: string,
    options?: { cause?: unknown },
  ) {
    super(`the identity of ${identifier} could not be established (${why})`, options);
  }
}

const SLACK_USER_ID = /^[UW][A-Z0-9]{2,}$/;

export const isSlackUserId = (identifier: string): boolean => SLACK_USER_ID.test(identifier);
const isEmail = (identifier: string): boolean => /^[^@\s]+@[^@\s]+$/.test(identifier);

/** Emails compare ignoring case; everything else (Slack ids, handles, names) exactly. */
export function normaliseIdentifier(identifier: string): string {
  const trimmed = identifier.trim();
  return isEmail(trimmed) ? trimmed.toLowerCase() : trimmed;
}

/**
 * Every identifier of a directory entry: its listed identifiers and its id. An operator who writes a grant owner
 * or a reviewer as the person's id ("olga") means that person; were the id not one of their identifiers, the
 * owner "olga" would be a stranger to Olga's own Slack click, and self-approval would pass unnoticed.
 */
const identifiersOf = (entry: PersonConfig): string[] => [entry.id, ...entry.identifiers];

/** The configured people and their identifiers (validated by the config schema: no identifier twice). */
export class PeopleDirectory {
  private readonly byIdentifier = new Map<string, PersonConfig>();

  constructor(entries: readonly PersonConfig[]) {
    for (const entry of entries) {
      for (const identifier of identifiersOf(entry)) {
        const key = normaliseIdentifier(identifier);
        const other = this.byIdentifier.get(key);
        // The schema refuses a listed identifier twice; a person's id that is another's identifier is refused
        // here (a directory built another way must not pick one of them silently either).
        if (other && other.id !== entry.id)
          throw new Error(
            `identifier "${identifier}" is listed for both "${other.id}" and "${entry.id}" (a person's id is one of their identifiers)`,
          );
        this.byIdentifier.set(key, entry);
      }
    }
  }

  find(identifier: string): PersonConfig | undefined {
    return this.byIdentifier.get(normaliseIdentifier(identifier));
  }

  /**
   * People listed with a Slack user id but no email. Slack is not asked about them, so their Slack email is
   * unknown to the gateway: a vote under that email would count as someone else's (worth a warning).
   */
  slackPeopleWithoutEmail(): string[] {
    const entries = new Set(this.byIdentifier.values());
    return [...entries]
      .filter((e) => e.identifiers.some(isSlackUserId) && !identifiersOf(e).some((i) => isEmail(i.trim())))
      .map((e) => e.id);
  }
}

function directoryPerson(entry: PersonConfig, ...more: string[]): Person {
  return {
    key: `person:${entry.id}`,
    identifiers: new Set([...identifiersOf(entry), ...more].map(normaliseIdentifier)),
  };
}

/** Resolves identifiers to people, with the directory and (for Slack ids) Slack's own profile. */
export class PersonResolver {
  constructor(
    private readonly directory: PeopleDirectory,
    /** Undefined without Slack: a Slack id the directory does not name is then unknown. */
    private readonly source: IdentitySource | undefined,
  ) {}

  /** The person behind `identifier`; throws IdentityUnknownError when it cannot be established. */
  async resolve(identifier: string): Promise<Person> {
    const given = normaliseIdentifier(identifier);
    if (given === '') throw new IdentityUnknownError(JSON.stringify(identifier), 'an empty identifier');
    const listed = this.directory.find(given);
    if (listed) return directoryPerson(listed, given);
    if (isSlackUserId(given)) {
      if (!this.source)
        throw new IdentityUnknownError(
          given,
          'Slack is not configured and the people directory does not name it',
        );
      let email: string;
      try {
        email = normaliseIdentifier(await this.source.slackUserEmail(given));
      } catch (error) {
        throw new IdentityUnknownError(given, (error as Error).message, { cause: error });
      }
      if (!isEmail(email)) throw new IdentityUnknownError(given, 'Slack gave no usable email');
      const byEmail = this.directory.find(email);
      if (byEmail) return directoryPerson(byEmail, given);
      return { key: `email:${email}`, identifiers: new Set([given, email]) };
    }
    if (isEmail(given)) return { key: `email:${given}`, identifiers: new Set([given]) };
    return { key: `name:${given}`, identifiers: new Set([given]) };
  }
}

/**
 * Could these be the same person? Same key, or any identifier in common. `lookAlikes` (e.g. the Slack handle a
 * click carried, which its owner can change) are compared too, ignoring case: they can only make two people
 * look the same, so they serve to refuse (self-approval), never to admit.
 */
export function couldBeSamePerson(a: Person, b: Person, lookAlikes: readonly string[] = []): boolean {
  if (a.key === b.key) return true;
  const folded = new Set([...a.identifiers].map((i) => i.toLowerCase()));
  return [...b.identifiers, ...lookAlikes].some((i) => folded.has(i.trim().toLowerCase()));
}
