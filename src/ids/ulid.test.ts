import { decodeTime, isValid } from 'ulid';
import { describe, expect, it } from 'vitest';
import { newUlid } from './ulid.js';

describe('newUlid', () => {
  it('makes valid ULIDs that carry their time and sort by it', () => {
    const at = Date.UTC(2026, 10, 23, 12, 0, 0, 123);
    const id = newUlid(at);
    expect(isValid(id)).toBe(true);
    expect(decodeTime(id)).toBe(at);
    expect(newUlid(at + 1) > newUlid(at)).toBe(true);
  });

  it('does not repeat over many ids', () => {
    const ids = new Set(Array.from({ length: 20_000 }, () => newUlid(0)));
    expect(ids.size).toBe(20_000);
  });
});
