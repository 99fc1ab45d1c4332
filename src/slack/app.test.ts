import { describe, expect, it } from 'vitest';
import { slackTimestampProblem } from './app.js';

describe('slackTimestampProblem', () => {
  const now = 1_800_000_000_000;
  it('accepts timestamps within five minutes either way', () => {
    expect(slackTimestampProblem(String(now / 1000), now)).toBeUndefined();
    expect(slackTimestampProblem(String(now / 1000 - 300), now)).toBeUndefined();
    expect(slackTimestampProblem(String(now / 1000 + 300), now)).toBeUndefined();
  });
  it('refuses stale, future, missing and malformed timestamps', () => {
    expect(slackTimestampProblem(String(now / 1000 - 301), now)).toBe('request timestamp is too old');
    expect(slackTimestampProblem(String(now / 1000 + 301), now)).toBe('request timestamp is in the future');
    expect(slackTimestampProblem(undefined, now)).toMatch(/missing or malformed/);
    expect(slackTimestampProblem('1e9', now)).toMatch(/missing or malformed/);
  });
});
