/**
 * Two gateway processes (`countersign serve`, real child processes) sharing one Redis and one Slack app:
 * a call parked on one is resumed by a click delivered to the other.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startServe } from './support/cli.js';
import type { ServeProcess } from './support/cli.js';
import { clickPayload, postInteraction, startFakeSlack } from './support/fake-slack.js';
import type { FakeSlack } from './support/fake-slack.js';
import { connectClient, toyServer } from './support/gateway.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from './support/redis.js';
import {
  AGENT_TOKEN,
  ALICE,
  CHANNEL,
  SIGNING_SECRET,
  api,
  approvalIdOf,
  executions,
  sha,
  slackEnv,
  text,
} from './support/approvals.js';

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold', timeout: '60s' },
    },
    DeleteCluster: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold', timeout: 2 },
    },
  },
};

describe('approvals across two gateway processes', () => {
  let dir: string;
  let log: string;
  let slack: FakeSlack;
  let a: ServeProcess;
  let b: ServeProcess;
  let agent: Client;
  const prefix = uniquePrefix('approval-replicas');

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-approval-replicas-'));
    log = path.join(dir, 'calls.jsonl');
    slack = await startFakeSlack();
    await writeFile(path.join(dir, 'p.json'), JSON.stringify(POLICY));
    const configFile = path.join(dir, 'countersign.json');
    await writeFile(
      configFile,
      JSON.stringify({
        listen: { port: 0 },
        redis: { url: testRedisUrl(), prefix },
        servers: { aws: toyServer('p.json', { env: { TOY_CALL_LOG: log } }) },
        grants: [{ id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) }],
      }),
    );
    const { COUNTERSIGN_ADMIN_TOKEN: _admin, ...slackOnly } = slackEnv(slack.apiUrl);
    const env = { LOG_LEVEL: 'warn', ...slackOnly };
    [a, b] = await Promise.all([
      startServe(configFile, { cwd: dir, env }),
      startServe(configFile, { cwd: dir, env }),
    ]);
    agent = await connectClient(`${a.url}/mcp`, { token: AGENT_TOKEN });
  }, 60_000);
  afterAll(async () => {
    await agent?.close();
    for (const replica of [a, b]) if (replica?.child.exitCode === null) replica.child.kill('SIGKILL');
    const redis = await connectTestRedis();
    await dropPrefix(redis, prefix);
    redis.disconnect();
    await slack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('park on one process, click on the other, the result comes back on the first', async () => {
    const pending = agent.callTool(
      { name: 'CloneContainerToECR', arguments: { repositoryName: 'prod-two' } },
      undefined,
      {
        timeout: 30_000,
      },
    ) as Promise<CallToolResult>;
    const id = approvalIdOf(await slack.waitFor('chat.postMessage'));
    // The other process knows the approval (shared Redis) and takes the click.
    expect((await api(b.url, `/approvals/${id}`, {})).status).toBe(503); // no admin token configured for b
    const res = await postInteraction(b.url, SIGNING_SECRET, clickPayload('countersign_approve', id, ALICE));
    expect(res.status).toBe(200);
    const result = await pending;
    expect(text(result)).toContain('cloned into prod-two');
    expect((await executions(log)).filter((e) => e.args.repositoryName === 'prod-two')).toHaveLength(1);
    await slack.waitFor('chat.update', (c) => JSON.stringify(c.body.blocks).includes('Approved'));
  });

  it('an approval parked on one process expires on time and its message is updated', async () => {
    const result = (await agent.callTool(
      { name: 'DeleteCluster', arguments: { id: 'prod-gone' } },
      undefined,
      { timeout: 30_000 },
    )) as CallToolResult;
    expect(text(result)).toContain('No decision within 2s; not executed');
    await slack.waitFor('chat.update', (c) => JSON.stringify(c.body.blocks).includes('Expired'));
    expect((await executions(log)).filter((e) => e.args.id === 'prod-gone')).toHaveLength(0);
  });
});
