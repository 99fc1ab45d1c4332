import { describe, expect, it } from 'vitest';
import { interactionOriginProblem, slackTimestampProblem } from './app.js';

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

describe('interactionOriginProblem', () => {
  const expected = { teamId: 'T1', appId: 'A1' };
  it('accepts an interaction from the configured workspace and app', () => {
    expect(interactionOriginProblem({ team: { id: 'T1' }, api_app_id: 'A1' }, expected)).toBeUndefined();
  });
  it('refuses another workspace or app, a missing one, and everything when nothing is configured', () => {
    expect(interactionOriginProblem({ team: { id: 'T2' }, api_app_id: 'A1' }, expected)).toMatch(
      /workspace "T2"/,
    );
    expect(interactionOriginProblem({ team: { id: 'T1' }, api_app_id: 'A2' }, expected)).toMatch(/app "A2"/);
    expect(interactionOriginProblem({ team: null, api_app_id: 'A1' }, expected)).toMatch(/workspace null/);
    expect(interactionOriginProblem({ team: { id: 'T1' } }, expected)).toMatch(/app null/);
    expect(interactionOriginProblem('garbage', expected)).toMatch(/workspace null/);
    expect(interactionOriginProblem({ team: { id: 'T1' }, api_app_id: 'A1' }, {})).toMatch(/workspace "T1"/);
  });
});
