import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkPolicyFiles, loadPolicyFile, parsePolicy, PolicyError } from './load.js';
import type { PolicyIssue } from './load.js';

const POLICYLAYER =
  '{"version":"1","default":"deny","tools":{"CloneContainerToECR":{"limits":[{"counter":"clonecontainertoecr_rate","window":"minute","max":10,"scope":"grant"}]}}}';

/** The issues a document is refused with; fails the test when it loads. */
function issuesOf(text: string, file = 'p.json'): PolicyIssue[] {
  try {
    parsePolicy(text, file);
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyError);
    return (error as PolicyError).issues;
  }
  throw new Error('expected the policy to be refused, but it loaded');
}

const doc = (extra: Record<string, unknown>): string =>
  JSON.stringify({ version: '1', default: 'deny', ...extra });
const pointers = (issues: PolicyIssue[]): string[] => issues.map((i) => i.path);

describe('parsePolicy', () => {
  it('the PolicyLayer document loads unchanged and yields a grant-scoped 60 s limit of 10', () => {
    const policy = parsePolicy(POLICYLAYER, 'pl.json');
    expect(policy.defaultAction).toBe('deny');
    expect(policy.hide).toEqual([]);
    expect(policy.allToolsLimits).toEqual([]);
    const rule = policy.exact.get('CloneContainerToECR');
    expect(rule).toMatchObject({
      name: 'CloneContainerToECR',
      isPattern: false,
      action: 'allow',
      require: [],
      denyIf: [],
    });
    expect(rule?.rule).toEqual({ file: 'pl.json', pointer: '/tools/CloneContainerToECR' });
    expect(rule?.limits).toEqual([
      {
        counter: 'clonecontainertoecr_rate',
        windowSeconds: 60,
        max: 10,
        scope: 'grant',
        rule: { file: 'pl.json', pointer: '/tools/CloneContainerToECR/limits/0' },
      },
    ]);
  });

  it('a broken file reports ALL issues with their pointers in document order', () => {
    const text = JSON.stringify({
      version: '2',
      tools: {
        'a/b~c': { 'deny-if': [], limits: [{ counter: '', window: 'fortnight', max: 0, scope: 'user' }] },
        x: {
          require: [
            { path: 'arg.x', op: 'eq', value: 1 },
            { path: 'args.x', op: 'equals', value: 1 },
            { path: 'args.x', op: 'gt', value: '5' },
            { path: 'args.x', op: 'regex', value: '(?<=a)b' },
            { path: 'args.x', op: 'exists', value: 1 },
            { path: 'args.x', op: 'in', value: 3 },
            { path: 'args.x', op: 'eq' },
          ],
        },
      },
      bogus: 1,
    });
    const issues = issuesOf(text, 'broken.json');
    expect(pointers(issues)).toEqual([
      '/version',
      '/tools/a~1b~0c/deny-if',
      '/tools/a~1b~0c/limits/0/counter',
      '/tools/a~1b~0c/limits/0/window',
      '/tools/a~1b~0c/limits/0/max',
      '/tools/a~1b~0c/limits/0/scope',
      '/tools/x/require/0/path',
      '/tools/x/require/1/op',
      '/tools/x/require/2/value',
      '/tools/x/require/3/value',
      '/tools/x/require/4/value',
      '/tools/x/require/5/value',
      '/tools/x/require/6/value',
      '/bogus',
      '/default',
    ]);
    expect(issues.every((i) => i.file === 'broken.json')).toBe(true);
    const byPath = new Map(issues.map((i) => [i.path, i.message]));
    expect(byPath.get('/version')).toBe('expected "1", got "2"');
    expect(byPath.get('/default')).toBe('missing; expected "allow" or "deny"');
    expect(byPath.get('/tools/x/require/2/value')).toMatch(/expected a number/);
    expect(byPath.get('/tools/x/require/3/value')).toMatch(/regular expression does not compile/);
    expect(byPath.get('/tools/x/require/4/value')).toBe('"exists" takes no value; remove "value"');
    expect(byPath.get('/tools/x/require/1/op')).toMatch(/expected "op" to be one of eq, neq, in/);
  });

  it('the error message lists every issue on its own line as <file>:<path>: <message>', () => {
    try {
      parsePolicy('{"version":"1","default":"maybe","tools":{"t":{"max":1}}}', 'm.json');
      expect.unreachable('the policy should be refused');
    } catch (error) {
      expect(error).toBeInstanceOf(PolicyError);
      expect((error as PolicyError).code).toBe('countersign.policy.invalid');
      expect((error as Error).message).toBe(
        [
          'm.json:/default: expected "allow" or "deny", got "maybe"',
          'm.json:/tools/t/max: unknown key "max"; expected one of action, reason, require, deny_if, limits, rate_limit, approval, approve_if, description',
        ].join('\n'),
      );
    }
  });

  it('JSON syntax error has line:column', () => {
    const issues = issuesOf(
      '{\n  "version": "1",\n  "default": "deny",\n  "tools": { "a": {}, }\n}',
      's.json',
    );
    expect(issues).toEqual([
      {
        file: 's.json',
        path: '',
        message: 'invalid JSON at line 4, column 23: unexpected "}"; expected a double-quoted property name',
      },
    ]);
    expect(issuesOf('{"version": "1", "default": tru}')[0]?.message).toMatch(
      /^invalid JSON at line 1, column 29: /,
    );
    expect(issuesOf('')[0]?.message).toBe('invalid JSON at line 1, column 1: unexpected end of input');
    expect(issuesOf('{"a":"x\ny"}')[0]?.message).toMatch(
      /^invalid JSON at line 1, column 8: control character/,
    );
  });

  const unknownKeys: [name: string, text: string, pointer: string, message: string][] = [
    [
      'a typo of a rule key',
      doc({ tools: { t: { 'deny-if': [] } } }),
      '/tools/t/deny-if',
      'unknown key "deny-if" (did you mean "deny_if"?)',
    ],
    ['a root key', doc({ tool: {} }), '/tool', 'unknown key "tool" (did you mean "tools"?)'],
    [
      'a limit key',
      doc({ tools: { t: { limits: [{ counter: 'c', window: 60, max: 1, scopes: 'grant' }] } } }),
      '/tools/t/limits/0/scopes',
      'unknown key "scopes" (did you mean "scope"?)',
    ],
    [
      'a condition key',
      doc({ tools: { t: { require: [{ path: 'args.a', op: 'eq', value: 1, values: [1] }] } } }),
      '/tools/t/require/0/values',
      'unknown key "values" (did you mean "value"?)',
    ],
    [
      'an all_tools key',
      doc({ all_tools: { rate: {} } }),
      '/all_tools/rate',
      'unknown key "rate"; expected one of limits, rate_limit',
    ],
  ];
  it.each(unknownKeys)('unknown key is rejected: %s', (_name, text, pointer, message) => {
    expect(issuesOf(text)).toEqual([{ file: 'p.json', path: pointer, message }]);
  });

  it.each([
    [
      'require_approval without reviewers',
      { action: 'require_approval' },
      '/tools/t/approval',
      'missing; a rule that needs human approval must name its reviewers in "approval": {"reviewers": [...]}',
    ],
    [
      'approve_if without reviewers',
      { approve_if: [] },
      '/tools/t/approval',
      'missing; a rule that needs human approval must name its reviewers in "approval": {"reviewers": [...]}',
    ],
    [
      'an approval block on a plain rule',
      { approval: { reviewers: ['ann'] } },
      '/tools/t/approval',
      'an approval block only applies with "action": "require_approval" or "approve_if"',
    ],
    [
      'approve_if on a denied tool',
      { action: 'deny', approve_if: [], approval: { reviewers: ['ann'] } },
      '/tools/t/approve_if',
      'approve_if applies to allowed calls; with "action": "deny" remove it',
    ],
    [
      'an unreachable quorum',
      { action: 'require_approval', approval: { reviewers: ['U1', 'U2'], quorum: 3 } },
      '/tools/t/approval/quorum',
      'quorum 3 can never be reached: only 2 reviewer(s) are listed',
    ],
    [
      'a bad timeout',
      { action: 'require_approval', approval: { reviewers: ['U1'], timeout: '15 minutes' } },
      '/tools/t/approval/timeout',
      'expected a duration such as "90s", "15m", "2h", "1d" or a positive whole number of seconds, got "15 minutes"',
    ],
    [
      'a bad wait',
      { action: 'require_approval', approval: { reviewers: ['U1'], wait: 'forever' } },
      '/tools/t/approval/wait',
      'expected "hold", "return" or "auto", got "forever"',
    ],
    [
      'a bad channel',
      { action: 'require_approval', approval: { reviewers: ['U1'], channel: '#ops' } },
      '/tools/t/approval/channel',
      'expected a Slack channel id such as "C0123456789", got "#ops"',
    ],
    [
      'no reviewers',
      { action: 'require_approval', approval: { reviewers: [] } },
      '/tools/t/approval/reviewers',
      'expected at least one reviewer',
    ],
    [
      'hold_for without auto',
      { action: 'require_approval', approval: { reviewers: ['U1'], wait: 'hold', hold_for: '10s' } },
      '/tools/t/approval/hold_for',
      'hold_for only applies when wait is "auto"',
    ],
  ])('an invalid approval rule is refused: %s', (_name, rule, pointer, message) => {
    expect(issuesOf(doc({ tools: { t: rule } }))).toEqual([{ file: 'p.json', path: pointer, message }]);
  });

  it('an approval block compiles with its defaults', () => {
    const policy = parsePolicy(
      doc({
        tools: {
          t: {
            action: 'require_approval',
            approval: { reviewers: ['U1', 'S2'], channel: 'C123', secret_args: ['args.token'] },
          },
        },
      }),
      'p.json',
    );
    expect(policy.exact.get('t')?.approval).toEqual({
      channel: 'C123',
      reviewers: ['U1', 'S2'],
      quorum: 1,
      timeoutSeconds: 900,
      allowSelfApproval: false,
      maxPending: 5,
      wait: 'auto',
      holdForSeconds: 45,
      secretArgs: [['token']],
      rule: { file: 'p.json', pointer: '/tools/t/approval' },
    });
    const custom = parsePolicy(
      doc({
        tools: {
          t: {
            approve_if: [{ path: 'args.env', op: 'eq', value: 'prod' }],
            approval: {
              reviewers: ['ann'],
              timeout: '2h',
              quorum: 1,
              wait: 'return',
              max_pending: 2,
              allow_self_approval: true,
            },
          },
        },
      }),
      'p.json',
    ).exact.get('t');
    expect(custom?.approval).toMatchObject({
      timeoutSeconds: 7200,
      wait: 'return',
      maxPending: 2,
      allowSelfApproval: true,
    });
    expect(custom?.approveIf).toHaveLength(1);
  });

  it('deep nesting is refused with a clear issue, without a stack overflow', () => {
    const deep = `{"version":"1","default":"deny","tools":{"t":{"require":[{"path":"args.a","op":"eq","value":${'['.repeat(100_000)}${']'.repeat(100_000)}}]}}}`;
    const [issue] = issuesOf(deep);
    expect(issue?.path).toBe('');
    expect(issue?.message).toMatch(
      /^document is nested deeper than 64 levels \(at line 1, column \d+\); refusing to load it$/,
    );
    // 64 levels is fine.
    const ok = `{"version":"1","default":"deny","tools":{"t":{"require":[{"path":"args.a","op":"eq","value":${'['.repeat(58)}${']'.repeat(58)}}]}}}`;
    expect(parsePolicy(ok, 'ok.json').exact.get('t')?.require).toHaveLength(1);
  });

  it('a document larger than 1 MiB is refused', () => {
    const big = doc({ description: 'x'.repeat(1024 * 1024) });
    expect(issuesOf(big)[0]?.message).toMatch(/larger than the 1 MiB \(1048576 bytes\) limit/);
  });

  it('__proto__ keys are names, never prototypes', () => {
    const policy = parsePolicy(
      '{"version":"1","default":"deny","tools":{"__proto__":{"limits":[{"counter":"p","window":1,"max":1}]},"constructor":{},"hasOwnProperty":{"action":"deny"}}}',
      'p.json',
    );
    expect([...policy.exact.keys()]).toEqual(['__proto__', 'constructor', 'hasOwnProperty']);
    expect(policy.exact.get('__proto__')?.rule.pointer).toBe('/tools/__proto__');
    expect(({} as Record<string, unknown>)['limits']).toBeUndefined();
    expect(issuesOf('{"version":"1","default":"deny","__proto__":{"tools":{}}}')).toEqual([
      {
        file: 'p.json',
        path: '/__proto__',
        message: expect.stringMatching(/^unknown key "__proto__"/) as unknown,
      },
    ]);
    expect(issuesOf('{"version":"1","default":"deny","tools":{"__proto__":{"bad":1}}}')[0]?.path).toBe(
      '/tools/__proto__/bad',
    );
  });

  it('shorthand rate_limit becomes a grant-scoped <tool>_rate counter; window names become seconds', () => {
    const policy = parsePolicy(
      doc({
        all_tools: { rate_limit: { max: 100, window: 'day' } },
        tools: {
          echo: { rate_limit: { max: 5, window: 'hour' } },
          'Describe*': { limits: [{ counter: 'd', window: 7, max: 2, scope: 'session' }] },
        },
      }),
      'r.json',
    );
    expect(policy.allToolsLimits).toEqual([
      {
        counter: 'all_tools_rate',
        windowSeconds: 86400,
        max: 100,
        scope: 'grant',
        rule: { file: 'r.json', pointer: '/all_tools/rate_limit' },
      },
    ]);
    expect(policy.exact.get('echo')?.limits).toEqual([
      {
        counter: 'echo_rate',
        windowSeconds: 3600,
        max: 5,
        scope: 'grant',
        rule: { file: 'r.json', pointer: '/tools/echo/rate_limit' },
      },
    ]);
    expect(policy.patterns[0]?.limits[0]).toMatchObject({ counter: 'd', windowSeconds: 7, scope: 'session' });
  });

  it('conditions are compiled with segments, pointers and a linear-time matcher', () => {
    const policy = parsePolicy(
      doc({
        tools: {
          'Describe*': {
            deny_if: [
              { path: 'args.a', op: 'exists' },
              { path: 'args.repo.name', op: 'regex', value: '^prod-' },
            ],
          },
        },
      }),
      'c.json',
    );
    const cond = policy.patterns[0]?.denyIf[1];
    expect(cond).toMatchObject({
      path: 'args.repo.name',
      segments: ['repo', 'name'],
      op: 'regex',
      value: '^prod-',
    });
    expect(cond?.rule).toEqual({ file: 'c.json', pointer: '/tools/Describe*/deny_if/1' });
    expect(cond?.matches?.('prod-db')).toBe(true);
    expect(cond?.matches?.('dev-prod-db')).toBe(false);
  });

  it('patterns are ordered longest first, ties in document order', () => {
    const policy = parsePolicy(
      doc({ tools: { 'a*': {}, 'b*': {}, 'abc*': {}, exact: {}, '?': {} } }),
      'o.json',
    );
    expect(policy.patterns.map((r) => r.name)).toEqual(['abc*', 'a*', 'b*', '?']);
    expect([...policy.exact.keys()]).toEqual(['exact']);
  });

  it('a counter reused with a different window or scope is an issue naming both pointers', () => {
    const issues = issuesOf(
      doc({
        all_tools: { limits: [{ counter: 'shared', window: 'minute', max: 100 }] },
        tools: {
          a: { limits: [{ counter: 'shared', window: 60, max: 5, scope: 'grant' }] },
          b: { limits: [{ counter: 'shared', window: 'hour', max: 5 }] },
          c: { limits: [{ counter: 'shared', window: 'minute', max: 5, scope: 'global' }] },
        },
      }),
    );
    expect(issues).toEqual([
      {
        file: 'p.json',
        path: '/tools/b/limits/0',
        message:
          'counter "shared" has window 3600s and scope grant here, but window 60s and scope grant at /all_tools/limits/0; a shared counter needs one window and scope',
      },
      {
        file: 'p.json',
        path: '/tools/c/limits/0',
        message:
          'counter "shared" has window 60s and scope global here, but window 60s and scope grant at /all_tools/limits/0; a shared counter needs one window and scope',
      },
    ]);
  });

  it.each([
    ['tools is not an object', doc({ tools: [] }), '/tools'],
    ['a tool name is empty', doc({ tools: { '': {} } }), '/tools/'],
    ['a hide entry is empty', doc({ hide: [''] }), '/hide/0'],
    ['a rule is not an object', doc({ tools: { t: true } }), '/tools/t'],
    [
      'a condition path does not start with args',
      doc({ tools: { t: { require: [{ path: 'env', op: 'exists' }] } } }),
      '/tools/t/require/0/path',
    ],
    [
      'a condition path has an empty segment',
      doc({ tools: { t: { require: [{ path: 'args..a', op: 'exists' }] } } }),
      '/tools/t/require/0/path',
    ],
    [
      'a counter has a space',
      doc({ tools: { t: { limits: [{ counter: 'a b', window: 1, max: 1 }] } } }),
      '/tools/t/limits/0/counter',
    ],
    [
      'a window is fractional',
      doc({ tools: { t: { rate_limit: { max: 1, window: 1.5 } } } }),
      '/tools/t/rate_limit/window',
    ],
    ['the document is an array', '[]', ''],
  ])('refused when %s', (_name, text, pointer) => {
    expect(pointers(issuesOf(text))).toEqual([pointer]);
  });
});

describe('loadPolicyFile / checkPolicyFiles', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'countersign-policy-'));
    await writeFile(path.join(dir, 'good.json'), POLICYLAYER);
    await writeFile(
      path.join(dir, 'bad.json'),
      '{"version":"1","default":"deny","tools":{"t":{"deny-if":[]}}}',
    );
    await writeFile(path.join(dir, 'latin1.json'), Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x7d]));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a file and names it in every rule', async () => {
    const file = path.join(dir, 'good.json');
    const policy = await loadPolicyFile(file);
    expect(policy.file).toBe(file);
    expect(policy.exact.get('CloneContainerToECR')?.limits[0]?.rule.file).toBe(file);
  });

  it('an optional display name is used in issues and rule references instead of the path', async () => {
    const policy = await loadPolicyFile(path.join(dir, 'good.json'), 'policies/good.json');
    expect(policy.file).toBe('policies/good.json');
    expect(policy.exact.get('CloneContainerToECR')?.rule).toEqual({
      file: 'policies/good.json',
      pointer: '/tools/CloneContainerToECR',
    });
    await expect(loadPolicyFile(path.join(dir, 'bad.json'), 'bad')).rejects.toThrow(
      /^bad:\/tools\/t\/deny-if: unknown key/,
    );
  });

  it('an unreadable or non-UTF-8 file is a PolicyError, never a silent allow', async () => {
    await expect(loadPolicyFile(path.join(dir, 'missing.json'))).rejects.toThrow(
      /cannot read the policy file: ENOENT/,
    );
    await expect(loadPolicyFile(dir)).rejects.toThrow(/not a regular file/);
    await expect(loadPolicyFile(path.join(dir, 'latin1.json'))).rejects.toThrow(/not valid UTF-8/);
  });

  it('checkPolicyFiles reports every file with its issues', async () => {
    const results = await checkPolicyFiles([
      path.join(dir, 'good.json'),
      path.join(dir, 'bad.json'),
      path.join(dir, 'missing.json'),
    ]);
    expect(results.map((r) => [path.basename(r.file), r.ok, r.issues.map((i) => i.path)])).toEqual([
      ['good.json', true, []],
      ['bad.json', false, ['/tools/t/deny-if']],
      ['missing.json', false, ['']],
    ]);
  });
});
