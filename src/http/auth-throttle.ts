import { createHash } from 'node:crypto';
import { isIPv6 } from 'node:net';
import type { Redis } from 'ioredis';
import { LuaScript } from '../redis/script.js';

/**
 * count_failure — one more wrong bearer token, counted three ways in the current window.
 * Guarantee: the three counts and their expiries change in one atomic step, shared by every gateway replica.
 *   KEYS[1]  failures from the client address in this window
 *   KEYS[2]  failures with this token (its fingerprint) in this window
 *   KEYS[3]  failures from everyone in this window
 *   ARGV[1]  ttl in seconds (the window's length plus slack)
 * Returns { address count, token count, global count }.
 */
const COUNT_FAILURE = new LuaScript(`
local counts = {}
for i = 1, 3 do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then redis.call('EXPIRE', KEYS[i], tonumber(ARGV[1])) end
  counts[i] = count
end
return counts
`);

/** What a lockout covers: wrong tokens from one address, one wrong token from anywhere, or every wrong token. */
export type LockoutScope = 'address' | 'token' | 'global';

export interface Lockout {
  scope: LockoutScope;
  retryAfterSeconds: number;
}

export interface AuthFailureLimits {
  /** Wrong tokens per window from one address, and per window with one token. */
  max: number;
  window_seconds: number;
  /** Wrong tokens per window from all addresses together. */
  global_max: number;
}

/** What counting one wrong token found. */
export interface FailureVerdict {
  /** The lockout the token falls under (answer 429), or none (answer 401). */
  lockout?: Lockout;
  /** The lockouts this very failure started (each is audited once, by the replica whose count crossed). */
  started: LockoutScope[];
  /** True when Redis could not be reached and the failure was counted in this process only. */
  countedLocally: boolean;
}

/**
 * A short fingerprint of a presented token: the first 8 bytes of its SHA-256, in hex. It only groups repeats
 * of one wrong token; two wrong tokens sharing a fingerprint merely share a counter, and a valid token is
 * never looked up by it. 64 bits of an unsalted hash are kept in Redis for one window, never the token.
 */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 16);
}

/**
 * What a client address is counted as: an IPv4 address as it is, an IPv6 address by its /64 — the block one
 * subscriber or host usually gets, through which a client can rotate addresses at will.
 */
export function addressBlock(address: string): string {
  if (!isIPv6(address)) return address;
  let text = address.split('%', 1)[0] ?? '';
  // An embedded IPv4 tail (64:ff9b::192.0.2.1) is two hextets.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left = '', right] = text.split('::', 2);
  const head = left ? left.split(':') : [];
  const tail = right ? right.split(':') : [];
  const zeros = right === undefined ? [] : Array<string>(8 - head.length - tail.length).fill('0');
  const hextets = [...head, ...zeros, ...tail].map((h) => parseInt(h, 16).toString(16));
  return `${hextets.slice(0, 4).join(':')}::/64`;
}

/** Past this many remembered lockouts or local counts, expired ones are forgotten (or new keys skipped). */
const MEMORY_BOUND = 100_000;

/**
 * Throttles bearer-token guessing without letting anyone lock out a valid token. Callers check a token's
 * validity first (constant time) and call this only for wrong tokens; a valid token never reaches it, so
 * nobody's failures can refuse it — not on a shared loopback, not behind one NAT.
 *
 * A wrong token is counted (fixed UTC windows, in Redis, shared by replicas) per client address, per token
 * fingerprint and globally. Past `max` for its address or its fingerprint, or `global_max` in total, wrong
 * tokens are answered 429 until the window ends. A lockout once seen is remembered in memory, so a flood of
 * wrong tokens from a locked-out address costs no Redis round trip.
 *
 * What this does not do: bound guessing. Tokens are checked before this throttle (so that a valid token is
 * never refused), which means a guess that happens to be right is served even from a locked-out address;
 * lockouts turn wrong tokens' 401 into 429 and make a flood visible (audited once), nothing more. What keeps
 * guessing infeasible is the token's entropy: 128 random bits (`openssl rand -hex 16`) cannot be found at any
 * rate a gateway serves, and `token_env` tokens shorter than 16 characters are refused at start. The
 * per-address limit keeps one client from turning everyone's typos into 429s (the global ceiling); the
 * per-fingerprint limit marks one wrong token (a revoked token in a fleet's config, a replayed leaked one)
 * repeated from many addresses.
 *
 * Fail closed: when Redis cannot be reached the failure is counted in this process instead (same limits, per
 * replica); the wrong token is still refused either way.
 */
export class AuthThrottle {
  private readonly lockedUntil = new Map<string, number>();
  /** Counts of the current window kept in this process while Redis cannot be reached. */
  private local = { windowStart: 0, counts: new Map<string, number>() };

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly limits: AuthFailureLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** The lockout (known to this process) that a wrong token from `address` with `fingerprint` falls under. */
  lockout(address: string, fingerprint: string): Lockout | undefined {
    const now = this.now();
    for (const [scope, key] of this.keysOf(address, fingerprint)) {
      const until = this.lockedUntil.get(key);
      if (until === undefined) continue;
      if (until <= now) {
        this.lockedUntil.delete(key);
        continue;
      }
      return { scope, retryAfterSeconds: Math.ceil((until - now) / 1000) };
    }
    return undefined;
  }

  /** Counts one wrong token (never throws: without Redis it counts locally). */
  async failure(address: string, token: string): Promise<FailureVerdict> {
    const fingerprint = tokenFingerprint(token);
    const known = this.lockout(address, fingerprint);
    // Already refused: counting it again would only cost a round trip.
    if (known) return { lockout: known, started: [], countedLocally: false };

    const now = this.now();
    const windowMs = this.limits.window_seconds * 1000;
    const start = Math.floor(now / windowMs) * windowMs;
    const keys = this.keysOf(address, fingerprint);
    let counts: number[];
    let countedLocally = false;
    try {
      const reply = await COUNT_FAILURE.run(
        this.redis,
        keys.map(([, key]) => `${this.prefix}authfail:${key}:${start}`),
        [this.limits.window_seconds + 5],
      );
      counts = (reply as unknown[]).map(Number);
    } catch {
      counts = this.countLocally(keys, start);
      countedLocally = true;
    }

    const started: LockoutScope[] = [];
    let lockout: Lockout | undefined;
    for (const [i, [scope, key]] of keys.entries()) {
      const limit = scope === 'global' ? this.limits.global_max : this.limits.max;
      const count = counts[i] ?? 0;
      if (count <= limit) continue;
      this.lockedUntil.set(key, start + windowMs);
      if (count === limit + 1) started.push(scope);
      lockout ??= { scope, retryAfterSeconds: Math.ceil((start + windowMs - now) / 1000) };
    }
    if (this.lockedUntil.size > MEMORY_BOUND) this.forgetExpired(now);
    return { ...(lockout ? { lockout } : {}), started, countedLocally };
  }

  private keysOf(address: string, fingerprint: string): [LockoutScope, string][] {
    return [
      ['address', `a:${addressBlock(address)}`],
      ['token', `t:${fingerprint}`],
      ['global', '*'],
    ];
  }

  private countLocally(keys: [LockoutScope, string][], start: number): number[] {
    if (this.local.windowStart !== start) this.local = { windowStart: start, counts: new Map() };
    const { counts } = this.local;
    return keys.map(([scope, key]) => {
      // Bounded memory: past the bound only the global count grows.
      if (scope !== 'global' && !counts.has(key) && counts.size >= MEMORY_BOUND) return 0;
      const count = (counts.get(key) ?? 0) + 1;
      counts.set(key, count);
      return count;
    });
  }

  private forgetExpired(now: number): void {
    for (const [key, until] of this.lockedUntil) if (until <= now) this.lockedUntil.delete(key);
  }
}

/**
 * The client's address: the socket's peer, or — when that peer is a trusted reverse proxy — the
 * rightmost X-Forwarded-For entry that is not itself a trusted proxy (entries further left can be forged).
 */
export function clientAddress(
  socketAddress: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: ReadonlySet<string>,
): string {
  const peer = normalize(socketAddress ?? 'unknown');
  if (!trusted.has(peer) || forwardedFor === undefined) return peer;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
    .split(',')
    .map((hop) => normalize(hop.trim()))
    .filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i];
    if (hop !== undefined && !trusted.has(hop)) return hop;
  }
  return peer;
}

function normalize(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
