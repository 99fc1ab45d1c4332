import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPolicyTestFile } from './policy-test.js';

describe('policy test files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-ptest-'));
    await writeFile(
      path.join(dir, 'p.json'),
      JSON.stringify({
        version: '1',
        default: 'deny',
        tools: { Describe: {}, Clone: { deny_if: [{ path: 'args.repo', op: 'regex', value: '^prod-' }] } },
      }),
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fails a case whose expected decision, reason or rule differs, and says how', async () => {
    const file = path.join(dir, 'p.test.json');
    await writeFile(
      file,
      JSON.stringify({
        policy: 'p.json',
        cases: [
          { name: 'right', tool: 'Describe', expect: 'allow' },
          { name: 'wrong decision', tool: 'Clone', args: { repo: 'prod-x' }, expect: 'allow' },
          { name: 'wrong reason', tool: 'Other', expect: 'deny', reason: 'deny_if' },
          {
            name: 'wrong rule',
            tool: 'Clone',
            args: { repo: 'prod-x' },
            expect: 'deny',
            rule: '/tools/Clone',
          },
        ],
      }),
    );
    const result = await runPolicyTestFile(file);
    expect(result.results.map((r) => [r.name, r.ok])).toEqual([
      ['right', true],
      ['wrong decision', false],
      ['wrong reason', false],
      ['wrong rule', false],
    ]);
    expect(result.results[1]?.detail).toContain('expected allow, got deny');
    expect(result.results[2]?.detail).toContain('expected reason deny_if, got default_deny');
    expect(result.results[3]?.detail).toContain('expected rule /tools/Clone, got /tools/Clone/deny_if/0');
  });

  it('reports an invalid test file without running anything', async () => {
    const file = path.join(dir, 'bad.test.json');
    await writeFile(
      file,
      JSON.stringify({ policy: 'p.json', cases: [{ name: 'x', tool: 'y', expect: 'maybe' }] }),
    );
    const result = await runPolicyTestFile(file);
    expect(result.results).toEqual([]);
    expect(result.error).toContain('expect');
  });
});
