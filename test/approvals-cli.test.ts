/**
 * Approvals without Slack, as the embedded default offers them: `serve` on loopback with no grants writes an
 * admin token to <data_dir>/admin-token, and `countersign approvals` lists, shows, approves and rejects.
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { runCli, startServe } from './support/cli.js';
import type { ServeProcess } from './support/cli.js';
import { connectClient, toyServer } from './support/gateway.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from './support/redis.js';
import { text } from './support/approvals.js';

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      approval: { reviewers: ['admin', 'ops'], wait: 'return' },
    },
  },
};

describe('countersign approvals (CLI) against a loopback gateway without Slack', () => {
  let dir: string;
  let configFile: string;
  let gateway: ServeProcess;
  let agent: Client;
  const prefix = uniquePrefix('approvals-cli');
  const cli = (...args: string[]) =>
    runCli(['approvals', ...args, '--config', configFile, '--url', gateway.url], {}, dir);
  const clone = (repositoryName: string) =>
    agent.callTool({ name: 'CloneContainerToECR', arguments: { repositoryName } }) as Promise<CallToolResult>;
  const idOf = (result: CallToolResult) =>
    String((result._meta?.['countersign/approval'] as { id: string }).id);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-approvals-cli-'));
    await writeFile(path.join(dir, 'p.json'), JSON.stringify(POLICY));
    configFile = path.join(dir, 'countersign.json');
    await writeFile(
      configFile,
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        redis: { url: testRedisUrl(), prefix },
        servers: { aws: toyServer('p.json') },
      }),
    );
    gateway = await startServe(configFile, { cwd: dir });
    agent = await connectClient(`${gateway.url}/mcp`);
  }, 60_000);
  afterAll(async () => {
    await agent?.close();
    if (gateway?.child.exitCode === null) gateway.child.kill('SIGKILL');
    const redis = await connectTestRedis();
    await dropPrefix(redis, prefix);
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  it('serve keeps a generated admin token readable only by its owner', async () => {
    const info = await stat(path.join(dir, '.countersign', 'admin-token'));
    expect(info.mode & 0o777).toBe(0o600);
  });

  it('lists and shows a parked call, refuses a non-reviewer, approves as a reviewer; the retry gets the result', async () => {
    const parked = await clone('cli-approved');
    const id = idOf(parked);
    const list = await cli('list', '--status', 'pending');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${id}\\s+pending\\s+aws/CloneContainerToECR\\s+local`));
    const show = await cli('show', id);
    expect(show.stdout).toContain('call      aws/CloneContainerToECR by grant local (owner local)');
    expect(show.stdout).toContain('arguments {"repositoryName":"cli-approved"}');

    const stranger = await cli('approve', id, '--reviewer', 'mallory');
    expect(stranger.code).toBe(1);
    expect(stranger.stdout).toContain('you are not a reviewer for this approval; nothing changed (HTTP 403)');
    const approved = await cli('approve', id, '--reviewer', 'admin');
    expect(approved.code).toBe(0);
    expect(approved.stdout.trim()).toBe(`${id}: approved by admin`);
    const again = await cli('reject', id, '--reviewer', 'ops');
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(/already approved by admin at .* \(HTTP 409\)/);

    const deadline = Date.now() + 10_000;
    let result = await clone('cli-approved');
    while (text(result).startsWith('Approval pending') && Date.now() < deadline)
      result = await clone('cli-approved');
    expect(text(result)).toContain('cloned into cli-approved');

    // The auditor's question: who approved what, when.
    const trail = await runCli(['audit', 'query', '--config', configFile, '--type', 'approval'], {}, dir);
    expect(trail.code).toBe(0);
    expect(trail.stdout).toMatch(
      new RegExp(`approval\\s+pending\\s+local\\s+aws/CloneContainerToECR\\s+approval_requested \\[${id}\\]`),
    );
    expect(trail.stdout).toMatch(
      new RegExp(
        `approval\\s+deny\\s+local\\s+aws/CloneContainerToECR\\s+reviewer_refused by mallory \\[${id}\\]`,
      ),
    );
    expect(trail.stdout).toMatch(
      new RegExp(`approval\\s+allow\\s+local\\s+aws/CloneContainerToECR\\s+approved by admin \\[${id}\\]`),
    );
  }, 60_000); // seven CLI processes (tsx from source), one after another: slow on a loaded machine

  it('reject with a reason reaches the agent; a wrong token and an unknown id fail clearly', async () => {
    const id = idOf(await clone('cli-rejected'));
    const rejected = await cli('reject', id, '--reviewer', 'ops', '--reason', 'wrong registry');
    expect(rejected.code).toBe(0);
    const result = await clone('cli-rejected');
    expect(result.isError).toBe(true);
    expect(text(result)).toContain('Rejected by ops: wrong registry');

    const wrong = await runCli(
      ['approvals', 'list', '--config', configFile, '--url', gateway.url, '--token', 'not-the-token-at-all'],
      {},
      dir,
    );
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toContain('Unauthorized');
    const unknown = await cli('show', '01JUNKNOWN0000000000000000');
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toContain('no approval with id');
  });
});
