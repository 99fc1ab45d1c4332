import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  AUDIT_ARGUMENTS_PREVIEW_CHARS,
  ArgumentsNotCanonicalError,
  MAX_AUDIT_ARGUMENTS_BYTES,
  REDACTED,
  auditedArguments,
  hashArguments,
  redactArguments,
  redactedShapeJson,
} from './args.js';

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

/** `value` behind a Proxy that counts how many of its elements or properties were read. */
function counted<T extends object>(value: T): { value: T; reads: () => number } {
  let reads = 0;
  const proxy = new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key === 'string' && key !== 'length') reads += 1;
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  return { value: proxy, reads: () => reads };
}

const bytesOf = (value: unknown): number => Buffer.byteLength(JSON.stringify(value), 'utf8');

describe('auditedArguments', () => {
  it('keeps a small call exactly as before: the redacted shape, or the arguments themselves', () => {
    const args = { id: 'c-1', __proto__key: { list: ['x', 2, true, null] }, flag: false };
    expect(auditedArguments(args, false)).toEqual({ argsRedacted: redactArguments(args) });
    expect(auditedArguments(args, false)).toEqual({
      argsRedacted: { id: REDACTED, __proto__key: { list: [REDACTED, REDACTED, true, null] }, flag: false },
    });
    expect(auditedArguments(args, true)).toEqual({ args });
  });

  it('cuts an array of many one-character strings to a bounded preview', () => {
    const items = Array.from({ length: 200_000 }, () => 'a');
    const { argsRedacted } = auditedArguments({ items }, false) as { argsRedacted: Record<string, unknown> };
    expect(argsRedacted).toMatchObject({ truncated: true, bytes: bytesOf({ items }) });
    expect(typeof argsRedacted.preview).toBe('string');
    expect((argsRedacted.preview as string).length).toBeLessThanOrEqual(AUDIT_ARGUMENTS_PREVIEW_CHARS);
    expect(argsRedacted.preview).toMatch(/^\{"items":\["\[redacted\]","\[redacted\]"/);
    expect(bytesOf(argsRedacted)).toBeLessThanOrEqual(MAX_AUDIT_ARGUMENTS_BYTES);
  });

  it('truncates many keys, keeping a preview of the first', () => {
    const wide: Record<string, number> = {};
    for (let i = 0; i < 100_000; i++) wide[`k${i}`] = i;
    const redacted = auditedArguments(wide, false).argsRedacted as { truncated: boolean; preview: string };
    expect(redacted.truncated).toBe(true);
    expect(redacted.preview).toContain('"k0":"[redacted]"');
    expect(bytesOf(redacted)).toBeLessThanOrEqual(MAX_AUDIT_ARGUMENTS_BYTES);
  });

  it('bounds the shape of deep nesting and of a huge key, and keeps lone surrogates out of the preview', () => {
    let deep: unknown = 'x';
    for (let i = 0; i < 5_000; i++) deep = [deep, { k: 'v' }];
    const nested = auditedArguments(deep, false).argsRedacted;
    expect(bytesOf(nested)).toBeLessThanOrEqual(MAX_AUDIT_ARGUMENTS_BYTES);
    expect(JSON.stringify(nested)).not.toMatch(/"x"|"v"/);

    const hugeKey = { [`${'k'.repeat(100_000)}\ud800`]: 1 };
    const keyed = auditedArguments(hugeKey, false).argsRedacted as { truncated: boolean; preview: string };
    expect(keyed.truncated).toBe(true);
    expect(keyed.preview.length).toBeLessThanOrEqual(AUDIT_ARGUMENTS_PREVIEW_CHARS);

    const pair = { s: `${'x'.repeat(AUDIT_ARGUMENTS_PREVIEW_CHARS - 8)}😀😀😀${'y'.repeat(20_000)}` };
    const kept = auditedArguments(pair, true).args as { preview: string };
    expect(kept.preview).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
  });

  it('keeps arguments up to the bound and truncates the kept JSON beyond it', () => {
    const under = { s: 'x'.repeat(MAX_AUDIT_ARGUMENTS_BYTES - 10) };
    expect(auditedArguments(under, true)).toEqual({ args: under });
    const over = { s: 'x'.repeat(MAX_AUDIT_ARGUMENTS_BYTES) };
    const { args } = auditedArguments(over, true) as { args: { preview: string } };
    expect(args).toEqual({
      truncated: true,
      bytes: MAX_AUDIT_ARGUMENTS_BYTES + 8,
      preview: JSON.stringify(over).slice(0, AUDIT_ARGUMENTS_PREVIEW_CHARS),
    });
  });
});

describe('redactedShapeJson', () => {
  it('stops walking an array once the budget is spent, instead of building the whole shape', () => {
    const { value: items, reads } = counted(Array.from({ length: 200_000 }, () => 'a'));
    const shape = redactedShapeJson({ items }, 8192);
    expect(shape.complete).toBe(false);
    expect(Buffer.byteLength(shape.text)).toBeLessThanOrEqual(8192 + 16);
    // ~13 bytes an element: about 630 elements fit, and the walk read no more than that.
    expect(reads()).toBeLessThan(700);
  });

  it('stops walking an object with many keys once the budget is spent', () => {
    const wide: Record<string, number> = {};
    for (let i = 0; i < 100_000; i++) wide[`k${i}`] = i;
    const { value, reads } = counted(wide);
    const shape = redactedShapeJson(value, 4096);
    expect(shape.complete).toBe(false);
    expect(Buffer.byteLength(shape.text)).toBeLessThanOrEqual(4096 + 16);
    expect(reads()).toBeLessThan(300);
  });

  it('respects the budget through deep nesting, and is complete (and parses) when it fits', () => {
    // 30 levels of two branches sharing one child: 2^30 leaves written out — only a budget ends the walk.
    let deep: unknown = 'x';
    for (let i = 0; i < 30; i++) deep = { d: [deep, deep] };
    const cut = redactedShapeJson(deep, 2048);
    expect(cut.complete).toBe(false);
    expect(Buffer.byteLength(cut.text)).toBeLessThanOrEqual(2048 + 16);
    const small = redactedShapeJson({ a: [1, { b: 's' }], c: true }, 2048);
    expect(small).toEqual({ complete: true, text: '{"a":["[redacted]",{"b":"[redacted]"}],"c":true}' });
  });
});
