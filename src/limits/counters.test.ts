import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { connectTestRedis, dropPrefix, uniquePrefix } from '../../test/support/redis.js';
import type { LimitSpec } from '../policy/types.js';
import { LimitCounters, LimitStoreUnavailableError, planCounters } from './counters.js';
import { createRedis } from '../redis/client.js';

const rule = { file: 'p.json', pointer: '/tools/t/limits/0' };
const perGrant = (max: number, windowSeconds = 60, counter = 'c'): LimitSpec => ({
  counter,
  windowSeconds,
  max,
  scope: 'grant',
  rule,
});
const subject = (grant: string, session = 's1') => ({ server: 'srv', grant, session });
const NOW = Date.UTC(2026, 10, 23, 12, 0, 30); // 30 s into a UTC minute

describe('LimitCounters', () => {
  let redis: Redis;
  const prefix = uniquePrefix('limits');
  beforeAll(async () => {
    redis = await connectTestRedis();
  });
  afterAll(async () => {
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  it('check() reports a full counter without taking anything', async () => {
    const counters = new LimitCounters(redis, `${prefix}check:`);
    expect(await counters.check([perGrant(2)], subject('g1'), NOW)).toBeUndefined();
    expect(await counters.check([perGrant(2)], subject('g1'), NOW)).toBeUndefined();
    await counters.reserve([perGrant(2)], subject('g1'), NOW);
    expect(await counters.check([perGrant(2)], subject('g1'), NOW)).toBeUndefined();
    await counters.reserve([perGrant(2)], subject('g1'), NOW);
    const full = await counters.check([perGrant(2)], subject('g1'), NOW);
    expect(full).toMatchObject({ ok: false, retryAfterSeconds: 30, counter: { count: 2, max: 2 } });
    expect(await counters.check([perGrant(2)], subject('g2'), NOW)).toBeUndefined();
  });

  it('admits exactly max of 200 concurrent calls', async () => {
    const counters = new LimitCounters(redis, `${prefix}a:`);
    const results = await Promise.all(
      Array.from({ length: 200 }, () => counters.reserve([perGrant(10)], subject('g1'), NOW)),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    const refused = results.filter((r) => !r.ok);
    expect(refused).toHaveLength(190);
    for (const r of refused) {
      if (r.ok) continue;
      expect(r.retryAfterSeconds).toBe(30);
      expect(r.retryAt.toISOString()).toBe('2026-11-23T12:01:00.000Z');
    }
  });

  it('counts each grant separately and global scope across grants', async () => {
    const counters = new LimitCounters(redis, `${prefix}b:`);
    for (let i = 0; i < 3; i++)
      expect((await counters.reserve([perGrant(3)], subject('g1'), NOW)).ok).toBe(true);
    expect((await counters.reserve([perGrant(3)], subject('g1'), NOW)).ok).toBe(false);
    expect((await counters.reserve([perGrant(3)], subject('g2'), NOW)).ok).toBe(true);
    const global: LimitSpec = { ...perGrant(2, 60, 'shared'), scope: 'global' };
    expect((await counters.reserve([global], subject('g1'), NOW)).ok).toBe(true);
    expect((await counters.reserve([global], subject('g2'), NOW)).ok).toBe(true);
    expect((await counters.reserve([global], subject('g3'), NOW)).ok).toBe(false);
  });

  it('starts a new count when the UTC-aligned window rolls over', async () => {
    const counters = new LimitCounters(redis, `${prefix}c:`);
    expect((await counters.reserve([perGrant(1)], subject('g1'), NOW)).ok).toBe(true);
    expect((await counters.reserve([perGrant(1)], subject('g1'), NOW + 29_000)).ok).toBe(false);
    expect((await counters.reserve([perGrant(1)], subject('g1'), NOW + 30_000)).ok).toBe(true);
  });

  it('reserves all counters or none', async () => {
    const counters = new LimitCounters(redis, `${prefix}d:`);
    const wide = perGrant(100, 60, 'wide');
    const narrow = perGrant(1, 60, 'narrow');
    expect((await counters.reserve([wide, narrow], subject('g1'), NOW)).ok).toBe(true);
    const refused = await counters.reserve([wide, narrow], subject('g1'), NOW);
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.limit.counter).toBe('narrow');
    const after = await counters.reserve([wide], subject('g1'), NOW);
    expect(after.ok && after.counters[0]?.count).toBe(2); // the refused call took nothing from "wide"
  });

  it('release gives the unit back and never goes below zero', async () => {
    const counters = new LimitCounters(redis, `${prefix}e:`);
    const first = await counters.reserve([perGrant(1)], subject('g1'), NOW);
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    await counters.release(first);
    await counters.release(first);
    const key = first.keys[0] ?? '';
    expect(await redis.get(key)).toBe('0');
    expect((await counters.reserve([perGrant(1)], subject('g1'), NOW)).ok).toBe(true);
  });

  it('shares a counter named twice and keeps the lower max', () => {
    const planned = planCounters('p:', [perGrant(10), perGrant(5)], subject('g1'), NOW);
    expect(planned).toHaveLength(1);
    expect(planned[0]?.spec.max).toBe(5);
  });

  it('throws LimitStoreUnavailableError when Redis is unreachable', async () => {
    const dead = createRedis('redis://127.0.0.1:1', 'dead');
    dead.on('error', () => undefined);
    const counters = new LimitCounters(dead, `${prefix}f:`);
    await expect(counters.reserve([perGrant(1)], subject('g1'), NOW)).rejects.toBeInstanceOf(
      LimitStoreUnavailableError,
    );
    dead.disconnect();
  });
});
