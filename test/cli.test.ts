import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { runCli } from './support/cli.js';
import { connectTestRedis, testRedisUrl } from './support/redis.js';

describe('countersign policy', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('check passes the example policies', async () => {
    const result = await runCli([
      'policy',
      'check',
      'policies/everything.json',
      'policies/policylayer-clonecontainertoecr.json',
    ]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('ok      policies/everything.json');
  });

  it('check exits non-zero naming file, JSON path and reason for every problem', async () => {
    const file = path.join(dir, 'broken.json');
    await writeFile(
      file,
      JSON.stringify({
        version: '1',
        default: 'deny',
        tools: {
          Clone: { limits: [{ counter: 'c', window: 'fortnight', max: 0 }] },
          Other: { deny_if: [{ path: 'args.x', op: 'like', value: 1 }] },
        },
      }),
    );
    const result = await runCli(['policy', 'check', file, 'policies/everything.json']);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`invalid ${file}`);
    expect(result.stdout).toContain(`${file}:/tools/Clone/limits/0/window:`);
    expect(result.stdout).toContain(`${file}:/tools/Clone/limits/0/max:`);
    expect(result.stdout).toContain(`${file}:/tools/Other/deny_if/0/op:`);
    expect(result.stdout).toContain('ok      policies/everything.json');
  });

  it('check reports a JSON syntax error with its line and column', async () => {
    const file = path.join(dir, 'syntax.json');
    await writeFile(file, '{\n  "version": "1",\n  "default": "deny",,\n}');
    const result = await runCli(['policy', 'check', file]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/line 3, column \d+/);
  });

  it('explain shows the decision, the rule and the limits from the same decide()', async () => {
    const allowed = await runCli([
      'policy',
      'explain',
      '--policy',
      'policies/policylayer-clonecontainertoecr.json',
      '--tool',
      'CloneContainerToECR',
      '--args',
      '{"repositoryName":"prod-api"}',
    ]);
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toContain('decision: allow');
    expect(allowed.stdout).toContain('clonecontainertoecr_rate: max 10 per 60s');
    const denied = await runCli([
      'policy',
      'explain',
      '--policy',
      'policies/policylayer-clonecontainertoecr.json',
      '--tool',
      'DeleteRepository',
    ]);
    expect(denied.code).toBe(3);
    expect(denied.stdout).toContain('decision: deny (default_deny)');
    expect(denied.stdout).toContain('#/default');
    const badArgs = await runCli([
      'policy',
      'explain',
      '--policy',
      'policies/everything.json',
      '--tool',
      'echo',
      '--args',
      '{oops',
    ]);
    expect(badArgs.code).toBe(2);
    expect(badArgs.stdout).toContain('--args is not valid JSON');
  });
});

describe('countersign audit', () => {
  let gateway: TestGateway;
  let configFile: string;

  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'p.json': { version: '1', default: 'deny', tools: { DescribeCluster: {} } } },
      config: { servers: { toy: toyServer('p.json') } },
    });
    const client = await connectClient(`${gateway.url}/mcp`);
    await client.callTool({ name: 'DescribeCluster', arguments: { id: 'c1' } });
    await client.callTool({ name: 'DeleteCluster', arguments: { id: 'c1' } });
    await client.close();
    configFile = path.join(gateway.dir, 'cli.json');
    await writeFile(
      configFile,
      JSON.stringify({
        redis: { url: testRedisUrl(), prefix: gateway.prefix },
        servers: { toy: toyServer('p.json') },
      }),
    );
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it('query lists decisions and results, filtered', async () => {
    const all = await runCli(['audit', 'query', '--config', configFile, '--json']);
    expect(all.code).toBe(0);
    const events = all.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(events.map((e) => [e.type, e.tool, e.decision])).toEqual([
      ['policy', '', 'allow'], // the policies in force at start
      ['policy', '', 'allow'], // the grants in force at start
      ['decision', 'DescribeCluster', 'allow'],
      ['result', 'DescribeCluster', 'allow'],
      ['decision', 'DeleteCluster', 'deny'],
    ]);
    const denied = await runCli([
      'audit',
      'query',
      '--config',
      configFile,
      '--decision',
      'deny',
      '--since',
      '10m',
    ]);
    expect(denied.code).toBe(0);
    expect(denied.stdout).toContain('DeleteCluster');
    expect(denied.stdout).not.toContain('DescribeCluster');
    const bad = await runCli(['audit', 'query', '--config', configFile, '--since', 'yesterday-ish']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--since');
  });

  it('verify passes an intact trail and exits 1 naming the first hand-edited event', async () => {
    const ok = await runCli(['audit', 'verify', '--config', configFile]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('5 events');

    // Someone with Redis access rewrites the stream, turning the denial into an allow.
    const redis = await connectTestRedis();
    const key = `${gateway.prefix}audit`;
    const entries = await redis.xrange(key, '-', '+');
    await redis.del(key);
    for (const [id, fields] of entries) {
      const edited = fields.map((value) => value.replace('"decision":"deny"', '"decision":"allow"'));
      await redis.xadd(key, id, ...edited);
    }
    redis.disconnect();
    const broken = await runCli(['audit', 'verify', '--config', configFile]);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain(`entry 4 (stream id ${entries[4]?.[0]})`);
    expect(broken.stdout).toContain('edited');
  });
});
