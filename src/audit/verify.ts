import type { Redis } from 'ioredis';
import { canonicalize } from './canonical.js';
import { GENESIS, linkHash } from './chain.js';
import { auditUnavailable } from './errors.js';
import { auditEventSchema } from './event.js';
import { readStream } from './stream.js';
import type { StreamEntry } from './stream.js';

export interface AuditKeys {
  stream: string;
  head: string;
}

/** Where the chain first breaks: the entry's stream id, its position (0-based) and what is wrong. */
export interface ChainBreak {
  streamId: string;
  index: number;
  problem: string;
}

/** `count`: entries verified (on failure, those before the break). `head`: the verified last hash. */
export type VerifyResult =
  { ok: true; count: number; head: string } | { ok: false; count: number; firstBad: ChainBreak };

/** Checks one entry against the hash of the entry before it; returns the problem, or null. */
function checkEntry(entry: StreamEntry, prev: string, prevId: string | null): string | null {
  const { e, h, p } = entry.fields;
  if (e === undefined || h === undefined || p === undefined) return 'entry lacks one of the fields e, h, p';
  if (p !== prev) {
    return prevId === null
      ? `first entry does not start the chain (previous hash ${p}, expected genesis): earlier events were removed`
      : `previous hash ${p} is not the hash of the entry before it (${prevId}): an event was removed, inserted or reordered`;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(e);
  } catch {
    return 'event is not valid JSON';
  }
  if (canonicalize(parsed) !== e) return 'event JSON is not in canonical form: it was edited';
  if (linkHash(p, e) !== h) return 'hash does not match the event: the event was edited';
  const checked = auditEventSchema.safeParse(parsed);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    return `event is not a valid audit event (${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'})`;
  }
  return null;
}

/**
 * Walks the whole stream in order, page by page, and checks that every entry's `p` is the previous entry's
 * `h` (genesis for the first), that `h` is the hash of `p` and the canonical event `e`, that `e` is a valid
 * event, and finally that the head key holds the last hash (catches a truncated tail). Appends that land
 * while verifying are followed until the head is reached.
 *
 * Limit: anyone who can write to Redis can rebuild the whole chain, or cut the tail and reset the head;
 * only a copy of the head kept elsewhere (the `head` this returns, or the JSONL mirror) exposes that.
 */
export async function verifyChain(redis: Redis, keys: AuditKeys, pageSize: number): Promise<VerifyResult> {
  let prev = GENESIS;
  let prevId: string | null = null;
  let count = 0;
  const broken = (streamId: string, problem: string): VerifyResult => ({
    ok: false,
    count,
    firstBad: { streamId, index: count, problem },
  });
  for (;;) {
    const start: string = prevId === null ? '-' : `(${prevId}`;
    const entries: AsyncGenerator<StreamEntry> = readStream(redis, keys.stream, { start, pageSize });
    for await (const entry of entries) {
      const problem = checkEntry(entry, prev, prevId);
      if (problem) return broken(entry.id, problem);
      prev = entry.fields.h as string;
      prevId = entry.id;
      count++;
    }
    let head: string | null;
    try {
      head = await redis.get(keys.head);
    } catch (error) {
      throw auditUnavailable(error);
    }
    if ((head ?? GENESIS) === prev && (head !== null || count === 0)) return { ok: true, count, head: prev };
    // The head may have moved past what was read: the script sets it together with its XADDs, so any
    // entries up to it are already in the stream. No newer entry means the tail or the head was tampered with.
    let newer: unknown[];
    try {
      newer = await redis.xrange(keys.stream, prevId === null ? '-' : `(${prevId}`, '+', 'COUNT', 1);
    } catch (error) {
      throw auditUnavailable(error);
    }
    if (newer.length > 0) continue;
    const where = prevId ?? '';
    if (head === null)
      return broken(where, `head key ${keys.head} is missing but the stream holds ${count} events`);
    return broken(
      where,
      count === 0
        ? `stream is empty but the head is ${head}: events were removed`
        : `head ${head} is not the hash of the last entry (${prev}): events after entry ${where} were removed, or the head was changed`,
    );
  }
}
