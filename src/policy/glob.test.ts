import { describe, expect, it } from 'vitest';
import { isGlob, matchGlob } from './glob.js';

describe('matchGlob', () => {
  const cases: [pattern: string, name: string, matches: boolean][] = [
    ['Describe*', 'DescribeCluster', true],
    ['Describe*', 'Describe', true],
    ['Describe*', 'describeCluster', false],
    ['Describe*', 'XDescribe', false],
    ['*', '', true],
    ['*', 'anything at all', true],
    ['get-?', 'get-a', true],
    ['get-?', 'get-', false],
    ['get-?', 'get-ab', false],
    ['a*b*c', 'aXXbYYc', true],
    ['a*b*c', 'aXXbYY', false],
    ['*.json', 'a.b.json', true],
    ['[abc]', '[abc]', true],
    ['[abc]', 'a', false],
    ['a.c', 'abc', false],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
    ['?', '😀', true],
    ['**a', 'bba', true],
  ];
  it.each(cases)('%s vs %s → %s', (pattern, name, matches) => {
    expect(matchGlob(pattern, name)).toBe(matches);
  });

  it('regex metacharacters in a pattern are literal', () => {
    expect(matchGlob('a+(b)|c$', 'a+(b)|c$')).toBe(true);
    expect(matchGlob('a+', 'aa')).toBe(false);
  });

  it('a pattern of many stars against a long non-matching name finishes quickly (no exponential backtracking)', () => {
    expect(matchGlob(`${'*a'.repeat(30)}b`, 'a'.repeat(5000))).toBe(false);
  });

  it('isGlob recognises * and ? only', () => {
    expect(isGlob('List*')).toBe(true);
    expect(isGlob('get-?')).toBe(true);
    expect(isGlob('CloneContainerToECR')).toBe(false);
    expect(isGlob('a.b[c]')).toBe(false);
  });
});
