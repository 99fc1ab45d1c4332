import type { Redis } from 'ioredis';
import type { LimitSpec } from '../policy/types.js';
import { LuaScript } from '../redis/script.js';
import { RELEASE_SCRIPT, RESERVE_SCRIPT } from './scripts.js';

const reserveScript = new LuaScript(RESERVE_SCRIPT);
const releaseScript = new LuaScript(RELEASE_SCRIPT);

/** Who a call is counted against. */
export interface LimitSubject {
  server: string;
  grant: string;
  session: string;
}

/** A counter as touched by one call (also what the audit event records). */
export interface CounterUse {
  counter: string;
  scope: LimitSpec['scope'];
  key: string;
  count: number;
  max: number;
}

export interface Reservation {
  ok: true;
  counters: CounterUse[];
  keys: string[];
}

export interface LimitExceeded {
  ok: false;
  limit: LimitSpec;
  counter: CounterUse;
  /** When the full counter's window ends. */
  retryAt: Date;
  retryAfterSeconds: number;
}

export class LimitStoreUnavailableError extends Error {
  readonly code = 'countersign.limits.unavailable';
  constructor(cause: unknown) {
    super(`policy store unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

const TTL_SLACK_SECONDS = 5;

function scopeId(spec: LimitSpec, subject: LimitSubject): string {
  switch (spec.scope) {
    case 'grant':
      return `g:${subject.grant}`;
    case 'session':
      return `s:${subject.session}`;
    case 'global':
      return '*';
  }
}

interface PlannedCounter {
  spec: LimitSpec;
  key: string;
  windowEnd: number;
}

/**
 * Plans the keys for a call: fixed windows aligned to UTC, one key per counter name, window, scope and
 * window start. Two limits that name the same counter and scope share a key; the lower max wins.
 */
export function planCounters(
  prefix: string,
  limits: readonly LimitSpec[],
  subject: LimitSubject,
  nowMs: number,
): PlannedCounter[] {
  const byKey = new Map<string, PlannedCounter>();
  for (const spec of limits) {
    const windowMs = spec.windowSeconds * 1000;
    const start = Math.floor(nowMs / windowMs) * windowMs;
    const key = `${prefix}limit:${subject.server}:${spec.counter}:${spec.windowSeconds}:${scopeId(spec, subject)}:${start}`;
    const existing = byKey.get(key);
    if (!existing || spec.max < existing.spec.max) byKey.set(key, { spec, key, windowEnd: start + windowMs });
  }
  return [...byKey.values()];
}

function exceeded(full: PlannedCounter, count: number, nowMs: number): LimitExceeded {
  return {
    ok: false,
    limit: full.spec,
    counter: { counter: full.spec.counter, scope: full.spec.scope, key: full.key, count, max: full.spec.max },
    retryAt: new Date(full.windowEnd),
    retryAfterSeconds: Math.max(1, Math.ceil((full.windowEnd - nowMs) / 1000)),
  };
}

/** Rate-limit counters in Redis: reserve before forwarding, release when the call never reached upstream. */
export class LimitCounters {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /**
   * Whether a call would fit now, without taking anything: the first full counter, or undefined. Used before
   * asking a person (a call over its limit is refused at once); the approved call reserves for real.
   */
  async check(
    limits: readonly LimitSpec[],
    subject: LimitSubject,
    nowMs: number,
  ): Promise<LimitExceeded | undefined> {
    if (limits.length === 0) return undefined;
    const planned = planCounters(this.prefix, limits, subject, nowMs);
    let counts: (string | null)[];
    try {
      counts = await this.redis.mget(...planned.map((p) => p.key));
    } catch (error) {
      throw new LimitStoreUnavailableError(error);
    }
    const index = planned.findIndex((p, i) => Number(counts[i] ?? 0) >= p.spec.max);
    const full = planned[index];
    return full ? exceeded(full, Number(counts[index] ?? 0), nowMs) : undefined;
  }

  async reserve(
    limits: readonly LimitSpec[],
    subject: LimitSubject,
    nowMs: number,
  ): Promise<Reservation | LimitExceeded> {
    if (limits.length === 0) return { ok: true, counters: [], keys: [] };
    const planned = planCounters(this.prefix, limits, subject, nowMs);
    const args: (string | number)[] = [];
    for (const p of planned) {
      args.push(p.spec.max, Math.ceil((p.windowEnd - nowMs) / 1000) + TTL_SLACK_SECONDS);
    }
    let reply: unknown;
    try {
      reply = await reserveScript.run(
        this.redis,
        planned.map((p) => p.key),
        args,
      );
    } catch (error) {
      throw new LimitStoreUnavailableError(error);
    }
    const values = (reply as number[]).map(Number);
    if (values[0] === -1) {
      const index = (values[1] ?? 1) - 1;
      const full = planned[index];
      if (!full)
        throw new LimitStoreUnavailableError(new Error(`unexpected reserve reply ${JSON.stringify(reply)}`));
      return exceeded(full, values[2] ?? 0, nowMs);
    }
    return {
      ok: true,
      keys: planned.map((p) => p.key),
      counters: planned.map((p, i) => ({
        counter: p.spec.counter,
        scope: p.spec.scope,
        key: p.key,
        count: values[i + 1] ?? 0,
        max: p.spec.max,
      })),
    };
  }

  /** Gives back a reservation; throws LimitStoreUnavailableError if Redis cannot be reached. */
  async release(reservation: Reservation): Promise<void> {
    if (reservation.keys.length === 0) return;
    try {
      await releaseScript.run(this.redis, reservation.keys, []);
    } catch (error) {
      throw new LimitStoreUnavailableError(error);
    }
  }
}
