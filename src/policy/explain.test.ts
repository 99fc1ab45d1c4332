import { describe, expect, it } from 'vitest';
import { decide } from './decide.js';
import { explainDecision } from './explain.js';
import { parsePolicy } from './load.js';

const policy = parsePolicy(
  JSON.stringify({
    version: '1',
    default: 'deny',
    tools: {
      echo: {
        rate_limit: { max: 600, window: 'minute' },
        limits: [{ counter: 'burst', window: 7, max: 3, scope: 'session' }],
      },
      ping: {},
    },
  }),
  'p.json',
);
const ctx = { grant: { id: 'g', owner: 'o' } };

describe('explainDecision', () => {
  it('an allow shows the rule, message and every limit', () => {
    expect(explainDecision(decide(policy, { tool: 'echo', args: {} }, ctx))).toBe(
      [
        'decision: allow',
        'rule:     p.json#/tools/echo',
        'message:  tool echo is allowed by rule /tools/echo',
        'limits:',
        '  - burst: max 3 per 7s, scope session (p.json#/tools/echo/limits/0)',
        '  - echo_rate: max 600 per 60s (1 minute), scope grant (p.json#/tools/echo/rate_limit)',
      ].join('\n'),
    );
  });

  it('an allow without limits says so', () => {
    expect(explainDecision(decide(policy, { tool: 'ping', args: {} }, ctx))).toMatch(/\nlimits: {3}none$/);
  });

  it('a deny shows its reason code, rule and message', () => {
    expect(explainDecision(decide(policy, { tool: 'rm', args: {} }, ctx))).toBe(
      [
        'decision: deny (default_deny)',
        'rule:     p.json#/default',
        'message:  tool rm is not allowed by this policy (default: deny)',
      ].join('\n'),
    );
  });

  it('no policy has no rule location', () => {
    expect(explainDecision(decide(undefined, { tool: 'rm', args: {} }, ctx))).toContain('rule:     (none)');
  });
});
