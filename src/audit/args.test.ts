import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ArgumentsNotCanonicalError, REDACTED, hashArguments, redactArguments } from './args.js';

const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

describe('hashArguments', () => {
  it('is the SHA-256 of the RFC 8785 canonical JSON', () => {
    expect(hashArguments({})).toBe(sha256('{}'));
    expect(hashArguments({ b: 1, a: [true, null, 'x'] })).toBe(sha256('{"a":[true,null,"x"],"b":1}'));
    expect(hashArguments({ n: 1e21, f: 0.1 })).toBe(sha256('{"f":0.1,"n":1e+21}'));
  });

  it('does not depend on key order, at any depth', () => {
    const one = { repo: 'r', image: { tag: 'v1', digest: 'sha256:abc' }, flags: [{ x: 1, y: 2 }] };
    const two = { flags: [{ y: 2, x: 1 }], image: { digest: 'sha256:abc', tag: 'v1' }, repo: 'r' };
    expect(hashArguments(one)).toBe(hashArguments(two));
  });

  it('differs when a value, a type or array order differs', () => {
    const base = hashArguments({ a: [1, 2], b: '1' });
    expect(hashArguments({ a: [2, 1], b: '1' })).not.toBe(base);
    expect(hashArguments({ a: [1, 2], b: 1 })).not.toBe(base);
    expect(hashArguments({ a: [1, 2], b: '1 ' })).not.toBe(base);
  });

  it('refuses what canonical JSON cannot represent, with a coded error', () => {
    expect(() => hashArguments({ s: '\ud800' })).toThrow(ArgumentsNotCanonicalError);
    expect(() => hashArguments({ n: Number.NaN })).toThrow(/canonical JSON/);
  });
});

describe('redactArguments', () => {
  it('keeps the shape and no secret value', () => {
    const args = {
      password: 'hunter2-very-secret',
      pin: 4711,
      nested: { token: 'sk-live-abcdef', list: ['AKIAIOSFODNN7EXAMPLE', 31337, { deep: 'ghp_secret' }] },
      dryRun: true,
      note: null,
    };
    const redacted = redactArguments(args);
    expect(redacted).toEqual({
      password: REDACTED,
      pin: REDACTED,
      nested: { token: REDACTED, list: [REDACTED, REDACTED, { deep: REDACTED }] },
      dryRun: true,
      note: null,
    });
    const text = JSON.stringify(redacted);
    for (const secret of ['hunter2', '4711', 'sk-live', 'AKIA', '31337', 'ghp_'])
      expect(text).not.toContain(secret);
  });

  it('redacts scalars at the top level and very deep nesting wholesale', () => {
    expect(redactArguments('secret')).toBe(REDACTED);
    let deep: unknown = 'secret-at-the-bottom';
    for (let i = 0; i < 100; i++) deep = { d: deep };
    expect(JSON.stringify(redactArguments(deep))).not.toContain('secret');
  });
});
