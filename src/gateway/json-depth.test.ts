import { describe, expect, it } from 'vitest';
import { nestedDeeperThan } from './json-depth.js';

const nested = (depth: number): unknown => JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`);

describe('nestedDeeperThan', () => {
  it('counts levels of arrays and objects', () => {
    expect(nestedDeeperThan({ a: [1, { b: 2 }] }, 3)).toBe(false);
    expect(nestedDeeperThan({ a: [1, { b: 2 }] }, 2)).toBe(true);
    expect(nestedDeeperThan('text', 0)).toBe(false);
    expect(nestedDeeperThan(nested(128), 128)).toBe(false);
    expect(nestedDeeperThan(nested(129), 128)).toBe(true);
  });

  it('does not overflow the stack on 200,000 levels', () => {
    expect(nestedDeeperThan(nested(200_000), 128)).toBe(true);
  });
});
