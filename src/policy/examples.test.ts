import { readdir, readFile } from 'node:fs/promises';
import { runPolicyTestFile } from './policy-test.js';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decide, visibleTools } from './decide.js';
import { loadPolicyFile } from './load.js';

const dir = fileURLToPath(new URL('../../policies/', import.meta.url));
const ctx = { grant: { id: 'g', owner: 'o' } };

describe('example policies in policies/', () => {
  it('every policy file loads', async () => {
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json') && !f.endsWith('.test.json'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const file of files) await expect(loadPolicyFile(`${dir}${file}`), file).resolves.toBeDefined();
  });

  it('every policy has a policy test file, and every case passes', async () => {
    const policies = (await readdir(dir)).filter((f) => f.endsWith('.json') && !f.endsWith('.test.json'));
    for (const file of policies) {
      const result = await runPolicyTestFile(`${dir}${file.replace(/\.json$/, '.test.json')}`);
      expect(result.error, file).toBeUndefined();
      expect(
        result.results.filter((r) => !r.ok),
        file,
      ).toEqual([]);
      expect(result.results.length, file).toBeGreaterThan(0);
    }
  });

  it('policylayer-clonecontainertoecr.json is the PolicyLayer example byte for byte', async () => {
    expect(await readFile(`${dir}policylayer-clonecontainertoecr.json`, 'utf8')).toBe(
      '{"version":"1","default":"deny","tools":{"CloneContainerToECR":{"limits":[{"counter":"clonecontainertoecr_rate","window":"minute","max":10,"scope":"grant"}]}}}',
    );
  });

  it('everything.json: get-env denied with its reason, password echo refused, limits applied', async () => {
    const policy = await loadPolicyFile(`${dir}everything.json`);
    const run = (tool: string, args: Record<string, unknown> = {}) => decide(policy, { tool, args }, ctx);
    expect(run('get-env')).toMatchObject({ kind: 'deny', reason: 'action_deny' });
    expect(run('get-env').message).toContain("exposes the server's environment variables");
    expect(run('echo', { message: 'my PASSWORD is hunter2' })).toMatchObject({
      kind: 'deny',
      reason: 'deny_if',
    });
    const echo = run('echo', { message: 'hello' });
    expect(
      echo.kind === 'allow' && echo.limits.map((l) => [l.counter, l.max, l.windowSeconds, l.scope]),
    ).toEqual([
      ['everything_all_tools', 1200, 60, 'grant'],
      ['echo_rate', 600, 60, 'grant'],
    ]);
    expect(run('get-sum', { a: 1, b: 2 }).kind).toBe('allow');
    expect(run('toggle-simulated-logging').kind).toBe('allow');
    expect(visibleTools(policy, ['echo', 'get-env', 'toggle-simulated-logging'])).toEqual([
      'echo',
      'get-env',
      'toggle-simulated-logging',
    ]);
  });

  it('readonly-deny-default.json: Describe*/List* allowed, Delete* hidden, the rest denied', async () => {
    const policy = await loadPolicyFile(`${dir}readonly-deny-default.json`);
    const kind = (tool: string) => {
      const d = decide(policy, { tool, args: {} }, ctx);
      return d.kind === 'allow' ? 'allow' : d.reason;
    };
    expect(
      ['DescribeClusters', 'ListBuckets', 'DeleteBucket', 'CreateBucket', 'CloneContainerToECR'].map(kind),
    ).toEqual(['allow', 'allow', 'hidden', 'action_deny', 'default_deny']);
  });
});
