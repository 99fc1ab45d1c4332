import type { Redis } from 'ioredis';
import { LuaScript } from '../redis/script.js';

/**
 * count_failure — one more wrong token from a client address in the current window.
 * Guarantee: the count and its expiry are set in one atomic step, shared by every gateway replica.
 *   KEYS[1]  failure counter for (address, window start)
 *   ARGV[1]  ttl in seconds (the window's remaining length plus slack)
 * Returns the new count.
 */
const COUNT_FAILURE = new LuaScript(`
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
return count
`);

export interface Lockout {
  retryAfterSeconds: number;
}

/**
 * Locks out a client address that sends too many wrong bearer tokens: failures are counted in Redis
 * (fixed UTC windows, shared by replicas); an address over the limit is refused with 429 — whatever token
 * it sends — until its window ends. Checking a lockout costs nothing on the hot path (an in-memory map
 * fed by the failure path).
 */
export class AuthThrottle {
  private readonly lockedUntil = new Map<string, number>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly max: number,
    private readonly windowSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The lockout in force for an address, if any. */
  lockout(address: string): Lockout | undefined {
    const until = this.lockedUntil.get(address);
    if (until === undefined) return undefined;
    const now = this.now();
    if (until <= now) {
      this.lockedUntil.delete(address);
      return undefined;
    }
    return { retryAfterSeconds: Math.ceil((until - now) / 1000) };
  }

  /**
   * Counts a wrong token. Resolves with the lockout when this failure crossed the limit (`first` is true
   * only for the failure that started it, so it is audited once). Throws when Redis cannot be reached.
   */
  async failure(address: string): Promise<(Lockout & { first: boolean }) | undefined> {
    const now = this.now();
    const windowMs = this.windowSeconds * 1000;
    const start = Math.floor(now / windowMs) * windowMs;
    const count = Number(
      await COUNT_FAILURE.run(
        this.redis,
        [`${this.prefix}authfail:${address}:${start}`],
        [this.windowSeconds + 5],
      ),
    );
    if (count <= this.max) return undefined;
    this.lockedUntil.set(address, start + windowMs);
    if (this.lockedUntil.size > 100_000) this.forgetExpired(now);
    return { retryAfterSeconds: Math.ceil((start + windowMs - now) / 1000), first: count === this.max + 1 };
  }

  private forgetExpired(now: number): void {
    for (const [address, until] of this.lockedUntil) if (until <= now) this.lockedUntil.delete(address);
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
