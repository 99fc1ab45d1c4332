import { describe, expect, it } from 'vitest';
import { decide, findRule, isHidden, visibleTools } from './decide.js';
import { parsePolicy } from './load.js';
import type { Decision, Policy } from './types.js';

const ctx = { grant: { id: 'g-1', owner: 'ann' } };

/** Tiny builder: a policy document as an object literal, compiled by the real loader. */
function policy(doc: Record<string, unknown>): Policy {
  return parsePolicy(JSON.stringify({ version: '1', ...doc }), 'test.json');
}

function call(p: Policy | undefined, tool: string, args: Record<string, unknown> = {}): Decision {
  return decide(p, { tool, args }, ctx);
}

function summary(d: Decision): string {
  return d.kind === 'deny' ? `deny ${d.reason} ${d.rule.pointer}` : `${d.kind} ${d.rule.pointer}`;
}

describe('decide', () => {
  const denyDefault = policy({
    default: 'deny',
    hide: ['Delete*', 'secret'],
    tools: {
      CloneContainerToECR: {},
      'Describe*': {},
      'DescribeSecret*': { action: 'deny', reason: 'secrets stay secret' },
      DescribeSecretNames: {},
      'List*': { action: 'deny' },
      'Lis?*': {},
      DeleteAll: {},
    },
  });
  const cases: [name: string, p: Policy, tool: string, expected: string][] = [
    [
      'listing a tool with {} under default deny allows it',
      denyDefault,
      'CloneContainerToECR',
      'allow /tools/CloneContainerToECR',
    ],
    [
      'default deny wildcard does not rescue unlisted',
      denyDefault,
      'PutObject',
      'deny default_deny /default',
    ],
    ['default deny pattern matches its tools', denyDefault, 'DescribeCluster', 'allow /tools/Describe*'],
    [
      'longer pattern beats shorter',
      denyDefault,
      'DescribeSecretValue',
      'deny action_deny /tools/DescribeSecret*/action',
    ],
    ['exact name beats pattern', denyDefault, 'DescribeSecretNames', 'allow /tools/DescribeSecretNames'],
    [
      'equal-length patterns: first in the document wins',
      denyDefault,
      'ListBuckets',
      'deny action_deny /tools/List*/action',
    ],
    ['hidden by glob even when listed in tools', denyDefault, 'DeleteAll', 'deny hidden /hide/0'],
    ['hidden by exact name', denyDefault, 'secret', 'deny hidden /hide/1'],
    ['names are case-sensitive', denyDefault, 'cloneContainerToECR', 'deny default_deny /default'],
    ['default allow lets unlisted tools through', policy({ default: 'allow' }), 'anything', 'allow /default'],
    ['hide * hides every tool', policy({ default: 'allow', hide: ['*'] }), 'echo', 'deny hidden /hide/0'],
  ];
  it.each(cases)('%s', (_name, p, tool, expected) => {
    expect(summary(call(p, tool))).toBe(expected);
  });

  it('no policy denies every call, naming the grant', () => {
    const d = call(undefined, 'echo');
    expect(d).toMatchObject({ kind: 'deny', reason: 'no_policy' });
    expect(d.message).toBe('no policy applies to grant g-1; every call is denied');
  });

  it('default deny message names the tool', () => {
    expect(call(denyDefault, 'PutObject').message).toBe(
      'tool PutObject is not allowed by this policy (default: deny)',
    );
  });

  it('action deny uses the rule reason', () => {
    expect(call(denyDefault, 'DescribeSecretValue').message).toBe(
      'tool DescribeSecretValue is denied by this policy: secrets stay secret',
    );
    expect(call(denyDefault, 'ListThings').message).toBe('tool ListThings is denied by this policy');
  });

  it('hidden tools are refused like unknown ones, without saying they exist', () => {
    expect(call(denyDefault, 'DeleteAll').message).toBe('tool DeleteAll is not available');
  });

  it('a tool named __proto__ or constructor is just a name', () => {
    const p = parsePolicy(
      '{"version":"1","default":"deny","tools":{"__proto__":{},"constructor":{"action":"deny"}}}',
      't.json',
    );
    expect(summary(call(p, '__proto__'))).toBe('allow /tools/__proto__');
    expect(summary(call(p, 'constructor'))).toBe('deny action_deny /tools/constructor/action');
    expect(summary(call(p, 'toString'))).toBe('deny default_deny /default');
    expect(summary(call(policy({ default: 'deny' }), 'constructor'))).toBe('deny default_deny /default');
  });

  describe('conditions', () => {
    const p = policy({
      default: 'deny',
      tools: {
        deploy: {
          require: [
            { path: 'args.env', op: 'in', value: ['staging', 'prod'] },
            { path: 'args.ticket', op: 'regex', value: '^OPS-[0-9]+$' },
          ],
          deny_if: [
            { path: 'args.force', op: 'eq', value: true },
            { path: 'args.replicas', op: 'gt', value: 10 },
          ],
        },
        push: {
          reason: 'pushes go to staging only',
          require: [{ path: 'args.env', op: 'eq', value: 'staging' }],
          deny_if: [{ path: 'args.image', op: 'contains', value: 'latest' }],
        },
      },
    });
    const ok = { env: 'prod', ticket: 'OPS-12', replicas: 3 };
    const conditionCases: [name: string, tool: string, args: Record<string, unknown>, expected: string][] = [
      ['all requirements hold and no deny_if matches', 'deploy', ok, 'allow /tools/deploy'],
      [
        'require fails when path missing',
        'deploy',
        { ticket: 'OPS-1' },
        'deny require_failed /tools/deploy/require/0',
      ],
      [
        'require fails on a wrong value',
        'deploy',
        { ...ok, ticket: 'x OPS-1' },
        'deny require_failed /tools/deploy/require/1',
      ],
      [
        'first matching deny_if denies',
        'deploy',
        { ...ok, force: true, replicas: 50 },
        'deny deny_if /tools/deploy/deny_if/0',
      ],
      [
        'a later deny_if is checked too',
        'deploy',
        { ...ok, replicas: 50 },
        'deny deny_if /tools/deploy/deny_if/1',
      ],
      ['deny_if on a missing path does not deny', 'push', { env: 'staging' }, 'allow /tools/push'],
      [
        'require is checked before deny_if',
        'push',
        { image: 'app:latest' },
        'deny require_failed /tools/push/require/0',
      ],
    ];
    it.each(conditionCases)('%s', (_name, tool, args, expected) => {
      expect(summary(call(p, tool, args))).toBe(expected);
    });

    it('a failed requirement names path, operator and expected value, and says when the path is missing', () => {
      expect(call(p, 'deploy', { ticket: 'OPS-1' }).message).toBe(
        'call to deploy refused: requirement not met: args.env in ["staging","prod"]; args.env is missing',
      );
      expect(call(p, 'deploy', { ...ok, ticket: 'nope' }).message).toBe(
        'call to deploy refused: requirement not met: args.ticket regex "^OPS-[0-9]+$"',
      );
    });

    it('messages lead with the rule reason when there is one', () => {
      expect(call(p, 'push', { env: 'prod' }).message).toBe(
        'call to push refused: pushes go to staging only (requirement not met: args.env eq "staging")',
      );
      expect(call(p, 'push', { env: 'staging', image: 'app:latest' }).message).toBe(
        'call to push refused: pushes go to staging only (deny_if matched: args.image contains "latest")',
      );
      expect(call(p, 'deploy', { ...ok, force: true }).message).toBe(
        'call to deploy refused: deny_if matched: args.force eq true',
      );
    });
  });

  describe('limits', () => {
    const p = policy({
      default: 'allow',
      all_tools: {
        limits: [{ counter: 'all', window: 'hour', max: 1000 }],
        rate_limit: { max: 50, window: 'second' },
      },
      tools: {
        echo: {
          limits: [{ counter: 'echo_daily', window: 'day', max: 5, scope: 'global' }],
          rate_limit: { max: 600, window: 'minute' },
        },
      },
    });
    it('allow carries all_tools limits followed by the rule limits', () => {
      const d = call(p, 'echo');
      expect(d.kind).toBe('allow');
      if (d.kind !== 'allow') return;
      expect(d.limits.map((l) => [l.counter, l.windowSeconds, l.max, l.scope, l.rule.pointer])).toEqual([
        ['all', 3600, 1000, 'grant', '/all_tools/limits/0'],
        ['all_tools_rate', 1, 50, 'grant', '/all_tools/rate_limit'],
        ['echo_daily', 86400, 5, 'global', '/tools/echo/limits/0'],
        ['echo_rate', 60, 600, 'grant', '/tools/echo/rate_limit'],
      ]);
    });
    it('default allow carries only the all_tools limits', () => {
      const d = call(p, 'other');
      expect(d.kind === 'allow' && d.limits.map((l) => l.counter)).toEqual(['all', 'all_tools_rate']);
    });
  });
});

describe('visibleTools / isHidden', () => {
  const p = policy({ default: 'deny', hide: ['Delete*', 'x?'], tools: { 'Get*': { action: 'deny' } } });
  it('filters out hidden tools and keeps denied-but-visible ones', () => {
    expect(visibleTools(p, ['DeleteBucket', 'GetObject', 'xy', 'xyz', 'PutObject'])).toEqual([
      'GetObject',
      'xyz',
      'PutObject',
    ]);
  });
  it('isHidden matches exact names and globs', () => {
    expect(isHidden(p, 'DeleteBucket')).toBe(true);
    expect(isHidden(p, 'GetObject')).toBe(false);
  });
  it('findRule returns undefined for an unlisted tool', () => {
    expect(findRule(p, 'PutObject')).toBeUndefined();
  });

  describe('human approval', () => {
    const approval = { reviewers: ['U1'], channel: 'C1' };
    const gated = policy({
      default: 'deny',
      all_tools: { limits: [{ counter: 'all', window: 'minute', max: 100 }] },
      tools: {
        CloneContainerToECR: {
          action: 'require_approval',
          reason: 'pushes to the production registry',
          require: [{ path: 'args.repositoryName', op: 'exists' }],
          deny_if: [{ path: 'args.repositoryName', op: 'regex', value: '^forbidden-' }],
          rate_limit: { max: 10, window: 'minute' },
          approval,
        },
        DeleteCluster: {
          approve_if: [{ path: 'args.name', op: 'regex', value: '^prod-' }],
          approval,
        },
      },
    });

    it('require_approval asks a person, with the approval spec and the limits that apply', () => {
      const d = call(gated, 'CloneContainerToECR', { repositoryName: 'app' });
      expect(summary(d)).toBe('require_approval /tools/CloneContainerToECR/action');
      expect(d).toMatchObject({
        message:
          'call to CloneContainerToECR needs human approval: every call to this tool is reviewed (pushes to the production registry)',
        approval: { reviewers: ['U1'], channel: 'C1', quorum: 1 },
      });
      expect(d.kind === 'require_approval' && d.limits.map((l) => l.counter)).toEqual([
        'all',
        'CloneContainerToECR_rate',
      ]);
    });

    it('argument rules run before approval: a call refused anyway never reaches a reviewer', () => {
      expect(summary(call(gated, 'CloneContainerToECR', {}))).toBe(
        'deny require_failed /tools/CloneContainerToECR/require/0',
      );
      expect(summary(call(gated, 'CloneContainerToECR', { repositoryName: 'forbidden-x' }))).toBe(
        'deny deny_if /tools/CloneContainerToECR/deny_if/0',
      );
    });

    it('approve_if asks a person only for the calls it matches', () => {
      expect(summary(call(gated, 'DeleteCluster', { name: 'prod-eu' }))).toBe(
        'require_approval /tools/DeleteCluster/approve_if/0',
      );
      expect(summary(call(gated, 'DeleteCluster', { name: 'dev-eu' }))).toBe('allow /tools/DeleteCluster');
    });

    it('approve_if conditions compare like deny_if: a type mismatch does not match', () => {
      const p = policy({
        default: 'deny',
        tools: { t: { approve_if: [{ path: 'args.n', op: 'gt', value: 5 }], approval } },
      });
      expect(summary(call(p, 't', { n: 6 }))).toBe('require_approval /tools/t/approve_if/0');
      expect(summary(call(p, 't', { n: 1 }))).toBe('allow /tools/t');
      expect(summary(call(p, 't', { n: '6' }))).toBe('allow /tools/t');
    });
  });
});
