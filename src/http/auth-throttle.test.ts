import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { createRedis } from '../redis/client.js';
import { freePort } from '../redis/embedded.js';
import { connectTestRedis, dropPrefix, uniquePrefix } from '../../test/support/redis.js';
import { AuthThrottle, addressBlock, clientAddress, tokenFingerprint } from './auth-throttle.js';

const LIMITS = { max: 3, window_seconds: 3600, global_max: 10 };

describe('AuthThrottle', () => {
  let redis: Redis;
  const prefix = uniquePrefix('throttle');
  // A fixed clock in the middle of a window, so no count is split by a window's end.
  const now = () => Date.UTC(2026, 11, 3, 10, 30);
  beforeAll(async () => {
    redis = await connectTestRedis();
  });
  afterAll(async () => {
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  it('shares counts between two instances (replicas) through Redis: failures spread over both lock out together', async () => {
    const one = new AuthThrottle(redis, `${prefix}r:`, LIMITS, now);
    const two = new AuthThrottle(redis, `${prefix}r:`, LIMITS, now);
    expect((await one.failure('10.0.0.1', 'g0')).lockout).toBeUndefined();
    expect((await two.failure('10.0.0.1', 'g1')).lockout).toBeUndefined();
    expect((await one.failure('10.0.0.1', 'g2')).lockout).toBeUndefined();
    const fourth = await two.failure('10.0.0.1', 'g3');
    expect(fourth).toMatchObject({
      lockout: { scope: 'address' },
      started: ['address'],
      countedLocally: false,
    });
    expect(fourth.lockout?.retryAfterSeconds).toBe(1800);
    // The first instance learns of it from its next count, and reports it as already started.
    expect(await one.failure('10.0.0.1', 'g4')).toMatchObject({ lockout: { scope: 'address' }, started: [] });
    expect(one.lockout('10.0.0.1', tokenFingerprint('anything'))).toMatchObject({ scope: 'address' });
    expect(one.lockout('10.0.0.2', tokenFingerprint('anything'))).toBeUndefined();
  });

  it('locks out one wrong token sent from many addresses by its fingerprint, and everything past the global ceiling', async () => {
    const throttle = new AuthThrottle(redis, `${prefix}f:`, LIMITS, now);
    const scopes = [];
    for (let i = 0; i < 5; i++) scopes.push((await throttle.failure(`10.1.0.${i}`, 'stale')).lockout?.scope);
    expect(scopes).toEqual([undefined, undefined, undefined, 'token', 'token']);
    // Four were counted (the fifth was refused from memory); six more distinct tokens from new addresses reach
    // the ceiling of ten, and the next one is over it.
    const more = [];
    for (let i = 0; i < 7; i++) more.push((await throttle.failure(`10.2.0.${i}`, `t${i}`)).lockout?.scope);
    expect(more).toEqual([undefined, undefined, undefined, undefined, undefined, undefined, 'global']);
    expect(throttle.lockout('10.9.9.9', tokenFingerprint('never-seen'))).toMatchObject({ scope: 'global' });
  });

  it('keeps counting in the process when Redis cannot be reached, so guessing stays bounded', async () => {
    const down = createRedis(`redis://127.0.0.1:${await freePort()}`, 'down');
    down.on('error', () => undefined);
    try {
      const throttle = new AuthThrottle(down, prefix, LIMITS, now);
      const verdicts = [];
      for (let i = 0; i < 5; i++) verdicts.push(await throttle.failure('10.3.0.1', `g${i}`));
      // (The fifth is refused from memory, without counting.)
      expect(verdicts.map((v) => v.countedLocally)).toEqual([true, true, true, true, false]);
      expect(verdicts.map((v) => v.lockout?.scope)).toEqual([
        undefined,
        undefined,
        undefined,
        'address',
        'address',
      ]);
      expect(verdicts[3]?.started).toEqual(['address']);
    } finally {
      down.disconnect();
    }
  });

  it('locks out a whole /64 when its addresses take turns guessing', async () => {
    const throttle = new AuthThrottle(redis, `${prefix}v6:`, LIMITS, now);
    const scopes = [];
    for (let i = 1; i <= 5; i++)
      scopes.push((await throttle.failure(`2001:db8:5:6::${i}`, `g${i}`)).lockout?.scope);
    expect(scopes).toEqual([undefined, undefined, undefined, 'address', 'address']);
    expect(throttle.lockout('2001:db8:5:7::1', tokenFingerprint('x'))).toBeUndefined();
  });
});

describe('addressBlock', () => {
  it('counts an IPv4 address as itself and an IPv6 address by its /64, however it is written', () => {
    expect(addressBlock('203.0.113.9')).toBe('203.0.113.9');
    expect(addressBlock('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressBlock('2001:DB8:1:2:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressBlock('2001:0db8:0001:0002:0:0:0:7')).toBe('2001:db8:1:2::/64');
    expect(addressBlock('2001:db8::')).toBe('2001:db8:0:0::/64');
    expect(addressBlock('::1')).toBe('0:0:0:0::/64');
    expect(addressBlock('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressBlock('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
    expect(addressBlock('unknown')).toBe('unknown');
  });
});

describe('tokenFingerprint', () => {
  it('is 16 hex characters, the same for the same token and different for another', () => {
    expect(tokenFingerprint('a')).toMatch(/^[0-9a-f]{16}$/);
    expect(tokenFingerprint('a')).toBe(tokenFingerprint('a'));
    expect(tokenFingerprint('a')).not.toBe(tokenFingerprint('b'));
  });
});

describe('clientAddress', () => {
  const proxies = new Set(['10.0.0.5', '10.0.0.6']);

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', () => {
    expect(clientAddress('203.0.113.9', '198.51.100.1', proxies)).toBe('203.0.113.9');
  });

  it('takes the rightmost untrusted hop behind trusted proxies, so a forged left part does not count', () => {
    expect(clientAddress('10.0.0.5', '6.6.6.6, 198.51.100.1, 10.0.0.6', proxies)).toBe('198.51.100.1');
  });

  it('reads IPv4-mapped addresses as IPv4', () => {
    expect(clientAddress('::ffff:10.0.0.5', '198.51.100.1', proxies)).toBe('198.51.100.1');
  });

  it('falls back to the peer when every hop is a trusted proxy', () => {
    expect(clientAddress('10.0.0.5', '10.0.0.6', proxies)).toBe('10.0.0.5');
  });
});
