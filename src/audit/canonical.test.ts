import fc from 'fast-check';
import reference from 'canonicalize';
import { describe, expect, it } from 'vitest';
import { canonicalize } from './canonical.js';

/** What the reference package gives: its text, or the message it throws. */
function outcome(f: (value: unknown) => string | undefined, value: unknown): string {
  try {
    return `ok:${String(f(value))}`;
  } catch (error) {
    return `error:${(error as Error).message}`;
  }
}

const loneSurrogate = fc.constantFrom('\uD800', '\uDBFF', '\uDC00', '\uDFFF', 'a\uD83D', '\uDE00b');
const awkwardKey = fc.oneof(
  fc.string(),
  fc.constantFrom(
    '0',
    '1',
    '10',
    '2',
    '01',
    '-1',
    '1.5',
    '4294967295',
    '__proto__',
    'constructor',
    ' ',
    'é',
    '\u{1F600}',
  ),
  loneSurrogate,
);
const leaf = fc.oneof(
  fc.string({ unit: 'binary' }),
  loneSurrogate,
  fc.double(),
  fc.integer(),
  fc.constantFrom(NaN, Infinity, -Infinity, -0, 1e21, 1e-7, 5e-324, undefined, null, true, false),
);
const value = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('object')),
  array: fc.array(tie('node'), { maxLength: 5 }),
  object: fc.dictionary(awkwardKey, tie('node'), { maxKeys: 6 }),
})).node;

describe('canonicalize (RFC 8785)', () => {
  it('writes exactly what the canonicalize package writes, and throws where it throws', () => {
    fc.assert(
      fc.property(value, (v) => {
        expect(outcome(canonicalize, v)).toBe(outcome(reference as (v: unknown) => string | undefined, v));
      }),
      { numRuns: 3000 },
    );
  });

  it('sorts keys by UTF-16 code units, index-like keys included, and keeps __proto__ as a key', () => {
    const parsed: unknown = JSON.parse('{"b":1,"10":2,"2":3,"-x":4,"__proto__":{"z":1,"a":2},"A":5}');
    expect(canonicalize(parsed)).toBe('{"-x":4,"10":2,"2":3,"A":5,"__proto__":{"a":2,"z":1},"b":1}');
  });

  it('refuses NaN, Infinity, lone surrogates and cycles', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalize({ n: NaN })).toThrow('NaN is not allowed');
    expect(() => canonicalize([Infinity])).toThrow('Infinity is not allowed');
    expect(() => canonicalize({ s: 'x\uD800' })).toThrow('Lone surrogate is not allowed');
    expect(() => canonicalize(cyclic)).toThrow('Circular reference detected');
  });

  it('writes array holes and items JSON cannot hold as the package does', () => {
    // eslint-disable-next-line no-sparse-arrays
    const values: unknown[] = [[, 1], [() => 1, 2], [{ toJSON: () => undefined }], { f: () => 1 }];
    for (const v of values)
      expect(outcome(canonicalize, v)).toBe(outcome(reference as (v: unknown) => string | undefined, v));
  });

  it('writes nesting deeper than the fast path takes', () => {
    let deep: unknown = { k: 'v' };
    for (let i = 0; i < 100; i++) deep = { [`k${i}`]: [deep] };
    expect(canonicalize(deep)).toBe((reference as (v: unknown) => string)(deep));
  });
});
