/**
 * Socket Mode (SLACK_APP_TOKEN): no public URL; clicks arrive over a WebSocket the app opens after
 * apps.connections.open. The fake Slack serves that socket too.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { clickPayload, startFakeSlack } from './support/fake-slack.js';
import type { FakeSlack } from './support/fake-slack.js';
import {
  AGENT_TOKEN,
  ALICE,
  CHANNEL,
  MALLORY,
  approvalIdOf,
  executions,
  sha,
  text,
} from './support/approvals.js';

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold' },
    },
  },
};

describe('Slack over Socket Mode', () => {
  let slack: FakeSlack;
  let gateway: TestGateway;
  let agent: Client;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-socket-'));
    slack = await startFakeSlack();
    gateway = await startTestGateway({
      policies: { 'aws.json': POLICY },
      config: {
        servers: { aws: toyServer('aws.json', { env: { TOY_CALL_LOG: path.join(dir, 'calls.jsonl') } }) },
        grants: [{ id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) }],
      },
      env: {
        SLACK_BOT_TOKEN: 'xoxb-test-token',
        SLACK_APP_TOKEN: 'xapp-test-token',
        SLACK_API_URL: slack.apiUrl,
        SLACK_TEAM_ID: 'T1',
        SLACK_APP_ID: 'A1',
      },
    });
    agent = await connectClient(`${gateway.url}/mcp`, { token: AGENT_TOKEN });
  });
  afterAll(async () => {
    await agent?.close();
    await gateway?.stop();
    await slack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('opens the socket with the app token, acknowledges clicks over it, and resumes the call', async () => {
    const open = await slack.waitFor('apps.connections.open');
    expect(open.token).toBe('xapp-test-token');
    const pending = agent.callTool(
      { name: 'CloneContainerToECR', arguments: { repositoryName: 'over-socket' } },
      undefined,
      {
        timeout: 30_000,
      },
    ) as Promise<CallToolResult>;
    const id = approvalIdOf(await slack.waitFor('chat.postMessage'));

    const refused = await slack.sendOverSocket(clickPayload('countersign_approve', id, MALLORY));
    expect(refused.envelope_id).toBe('envelope-1');
    expect((await slack.waitFor('chat.postEphemeral')).body.text).toBe(
      'you are not a reviewer for this approval; nothing changed',
    );

    const ack = await slack.sendOverSocket(clickPayload('countersign_approve', id, ALICE));
    expect(ack.envelope_id).toBe('envelope-2');
    expect(text(await pending)).toContain('cloned into over-socket');
    expect(
      (await executions(path.join(dir, 'calls.jsonl'))).filter(
        (e) => e.args.repositoryName === 'over-socket',
      ),
    ).toHaveLength(1);
    // No HTTP endpoint in Socket Mode.
    expect((await fetch(`${gateway.url}/slack/events`, { method: 'POST' })).status).toBe(404);
  });
});
