import { RE2JS } from 're2js';
import { describe, expect, it } from 'vitest';
import { describeCondition, evaluateCondition } from './conditions.js';
import type { Condition, ConditionOp } from './types.js';

function cond(path: string, op: ConditionOp, value?: unknown): Condition {
  const c: Condition = {
    path,
    segments: path.split('.').slice(1),
    op,
    rule: { file: 't.json', pointer: '/x' },
  };
  if (value !== undefined) c.value = value;
  if (op === 'regex' && typeof value === 'string') {
    const re = RE2JS.compile(value);
    c.matches = (input) => re.test(input);
  }
  return c;
}

describe('evaluateCondition', () => {
  const args = {
    env: 'prod',
    count: 5,
    tags: ['a', { k: 1 }],
    repo: { name: 'web', owner: { login: 'ann' } },
    flag: false,
    nothing: null,
  };
  const cases: [name: string, c: Condition, expected: boolean][] = [
    ['eq on a string', cond('args.env', 'eq', 'prod'), true],
    ['eq is type-strict', cond('args.count', 'eq', '5'), false],
    ['eq compares objects deeply, key order ignored', cond('args.repo.owner', 'eq', { login: 'ann' }), true],
    ['eq compares arrays deeply', cond('args.tags', 'eq', ['a', { k: 1 }]), true],
    ['eq null matches null', cond('args.nothing', 'eq', null), true],
    ['neq on a different value', cond('args.env', 'neq', 'dev'), true],
    ['neq on an equal value', cond('args.env', 'neq', 'prod'), false],
    ['in with deep-equal member', cond('args.repo.owner', 'in', [{ login: 'bob' }, { login: 'ann' }]), true],
    ['in without member', cond('args.env', 'in', ['dev', 'staging']), false],
    ['not_in without member', cond('args.env', 'not_in', ['dev', 'staging']), true],
    ['not_in with member', cond('args.env', 'not_in', ['prod']), false],
    ['gt on numbers', cond('args.count', 'gt', 4), true],
    ['gt equal is false', cond('args.count', 'gt', 5), false],
    ['gte equal is true', cond('args.count', 'gte', 5), true],
    ['lt on numbers', cond('args.count', 'lt', 6), true],
    ['lte equal is true', cond('args.count', 'lte', 5), true],
    ['gt on a string argument is false', cond('args.env', 'gt', 1), false],
    ['regex searches anywhere', cond('args.repo.name', 'regex', 'e'), true],
    ['regex anchors are up to the author', cond('args.repo.name', 'regex', '^e'), false],
    ['regex (?i) flag', cond('args.env', 'regex', '(?i)PROD'), true],
    ['regex on a number argument is false', cond('args.count', 'regex', '5'), false],
    ['contains substring', cond('args.env', 'contains', 'ro'), true],
    ['contains on string with a non-string value is false', cond('args.env', 'contains', 1), false],
    ['contains deep-equal array element', cond('args.tags', 'contains', { k: 1 }), true],
    ['contains missing array element', cond('args.tags', 'contains', 'b'), false],
    ['contains on a number is false', cond('args.count', 'contains', 5), false],
    ['numeric segment indexes an array', cond('args.tags.1.k', 'eq', 1), true],
    ['out-of-range index is missing', cond('args.tags.2', 'exists'), false],
    ['non-canonical index is missing', cond('args.tags.01', 'exists'), false],
    ['exists on false', cond('args.flag', 'exists'), true],
    ['exists on null', cond('args.nothing', 'exists'), true],
    ['path through a primitive is missing', cond('args.env.length', 'exists'), false],
  ];
  it.each(cases)('%s', (_name, c, expected) => {
    expect(evaluateCondition(c, args)).toBe(expected);
  });

  const missingCases: [ConditionOp, unknown, boolean][] = [
    ['exists', undefined, false],
    ['not_exists', undefined, true],
    ['neq', 'x', true],
    ['eq', 'x', false],
    ['in', ['x'], false],
    ['not_in', ['x'], false],
    ['gt', 1, false],
    ['lte', 1, false],
    ['regex', '.*', false],
    ['contains', 'x', false],
  ];
  it.each(missingCases)('a missing path makes %s %s → %s', (op, value, expected) => {
    expect(evaluateCondition(cond('args.absent.deeper', op, value), args)).toBe(expected);
  });

  it('args.constructor is not resolved through the prototype', () => {
    expect(evaluateCondition(cond('args.constructor', 'exists'), {})).toBe(false);
    expect(evaluateCondition(cond('args.constructor', 'not_exists'), {})).toBe(true);
    expect(evaluateCondition(cond('args.toString', 'exists'), {})).toBe(false);
    expect(evaluateCondition(cond('args.__proto__', 'exists'), {})).toBe(false);
    expect(evaluateCondition(cond('args.tags.length', 'exists'), { tags: [1] })).toBe(false);
  });

  it('an own __proto__ key (as JSON.parse creates it) is an ordinary argument', () => {
    const parsed: unknown = JSON.parse('{"__proto__":{"admin":true}}');
    expect(evaluateCondition(cond('args.__proto__.admin', 'eq', true), parsed)).toBe(true);
    expect(evaluateCondition(cond('args.admin', 'exists'), parsed)).toBe(false);
  });

  it('regex condition is linear on a crafted 100k-char argument', () => {
    // Catastrophic for a backtracking engine; RE2 answers in linear time.
    const c = cond('args.s', 'regex', '^(a+)+$');
    expect(evaluateCondition(c, { s: `${'a'.repeat(100_000)}!` })).toBe(false);
    expect(evaluateCondition(c, { s: 'a'.repeat(100_000) })).toBe(true);
  }, 10_000);
});

describe('describeCondition', () => {
  it('names path, operator and expected value', () => {
    expect(describeCondition(cond('args.env', 'eq', 'prod'))).toBe('args.env eq "prod"');
    expect(describeCondition(cond('args.env', 'in', ['a', 'b']))).toBe('args.env in ["a","b"]');
    expect(describeCondition(cond('args.id', 'exists'))).toBe('args.id exists');
  });
});
