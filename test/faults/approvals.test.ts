/**
 * Faults around parked calls: the agent's client disconnects while its call is held for approval, and the
 * Slack API is down for a while. Real gateway, real Redis, the SDK client, the fake Slack API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { clickPayload, postInteraction, startFakeSlack } from '../support/fake-slack.js';
import type { FakeSlack } from '../support/fake-slack.js';
import { startTestGateway, toyServer } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import {
  AGENT_TOKEN,
  ALICE,
  CHANNEL,
  SIGNING_SECRET,
  postedApprovalId,
  executions,
  sha,
  slackEnv,
  text,
  until,
} from '../support/approvals.js';
import path from 'node:path';

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold', timeout: '5m' },
    },
    DeleteCluster: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold', timeout: 2 },
    },
  },
};

async function connect(url: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'fault-agent', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${AGENT_TOKEN}` } },
  });
  await client.connect(transport);
  return { client, transport };
}

describe('faults around parked calls', () => {
  let slack: FakeSlack;
  let gateway: TestGateway;
  let log: string;

  beforeAll(async () => {
    slack = await startFakeSlack();
    gateway = await startTestGateway({
      config: {
        servers: { aws: toyServer('p.json', { env: { TOY_CALL_LOG: 'calls.jsonl' } }) },
        grants: [{ id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) }],
        approvals: { poll_ms: 200 },
      },
      policies: { 'p.json': POLICY },
      env: slackEnv(slack.apiUrl),
    });
    log = path.join(gateway.dir, 'calls.jsonl');
  }, 30_000);
  afterAll(async () => {
    await gateway?.stop();
    await slack?.close();
  });

  const watched = (): number => gateway.services.approvals.parking.size;
  const ran = async (name: string): Promise<number> =>
    (await executions(log)).filter((e) => e.args.repositoryName === name).length;

  it('the client gives up on a held call: the approval still resolves, the result waits for the retry, nothing leaks', async () => {
    const { client } = await connect(`${gateway.url}/mcp`);
    const controller = new AbortController();
    const held = client
      .callTool({ name: 'CloneContainerToECR', arguments: { repositoryName: 'gave-up' } }, undefined, {
        signal: controller.signal,
      })
      .catch((error: Error) => error);
    const id = await postedApprovalId(slack, 'gave-up');
    controller.abort();
    expect(await held).toBeInstanceOf(Error);
    // Its session lives, so the approval runs the call at once and keeps the result for the retry.
    await postInteraction(gateway.url, SIGNING_SECRET, clickPayload('countersign_approve', id, ALICE));
    await until(
      async () => ((await ran('gave-up')) === 1 ? true : undefined),
      10_000,
      'the approved call to run',
    );
    await until(async () => (watched() === 0 ? true : undefined), 10_000, 'the parked call to be released');
    const retry = (await client.callTool({
      name: 'CloneContainerToECR',
      arguments: { repositoryName: 'gave-up' },
    })) as CallToolResult;
    expect(text(retry)).toContain('cloned into gave-up');
    expect(await ran('gave-up')).toBe(1);
    expect(gateway.services.approvals.events.waiting).toBe(0);
    expect(gateway.services.inflight.size).toBe(0);
    await client.close();
  });

  it('the connection drops (no cancellation sent) while a call is held: the result is kept for the retry, not lost', async () => {
    const { client, transport } = await connect(`${gateway.url}/mcp`);
    const connection = new AbortController();
    const response = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${AGENT_TOKEN}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': transport.sessionId ?? '',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 'held-raw',
        method: 'tools/call',
        params: { name: 'CloneContainerToECR', arguments: { repositoryName: 'dropped' } },
      }),
      signal: connection.signal,
    });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const id = await postedApprovalId(slack, 'dropped');
    connection.abort(); // the TCP connection closes; the client says nothing
    await new Promise((r) => setTimeout(r, 300));
    await postInteraction(gateway.url, SIGNING_SECRET, clickPayload('countersign_approve', id, ALICE));
    await until(
      async () => ((await ran('dropped')) === 1 ? true : undefined),
      10_000,
      'the approved call to run',
    );
    // The result was kept, not written to the dead connection: the identical call gets it.
    const retry = (await client.callTool({
      name: 'CloneContainerToECR',
      arguments: { repositoryName: 'dropped' },
    })) as CallToolResult;
    expect(text(retry)).toContain('cloned into dropped');
    expect(await ran('dropped')).toBe(1);
    await client.close();
  });

  it('the client disconnects and ends its session: the approval resolves, the new session’s retry runs it once', async () => {
    const first = await connect(`${gateway.url}/mcp`);
    const held = first.client
      .callTool({ name: 'CloneContainerToECR', arguments: { repositoryName: 'gone-away' } }, undefined, {
        timeout: 60_000,
      })
      .catch((error: Error) => error);
    const id = await postedApprovalId(slack, 'gone-away');
    await first.transport.terminateSession();
    await first.client.close();
    expect(await held).toBeInstanceOf(Error);
    await until(
      async () => (watched() === 0 ? true : undefined),
      10_000,
      'the session’s parked call to be dropped',
    );

    await postInteraction(gateway.url, SIGNING_SECRET, clickPayload('countersign_approve', id, ALICE));
    await new Promise((r) => setTimeout(r, 500));
    expect(await ran('gone-away')).toBe(0); // nobody left to run it: it waits for the retry
    const second = await connect(`${gateway.url}/mcp`);
    const retry = (await second.client.callTool({
      name: 'CloneContainerToECR',
      arguments: { repositoryName: 'gone-away' },
    })) as CallToolResult;
    expect(text(retry)).toContain('cloned into gone-away');
    expect(await ran('gone-away')).toBe(1);
    await until(async () => (watched() === 0 ? true : undefined), 10_000, 'nothing watched');
    expect(gateway.services.approvals.events.waiting).toBe(0);
    await second.client.close();
  });

  it('Slack down for a while: the message is posted once it is back; an approval that expired meanwhile is denied, not run', async () => {
    const { client } = await connect(`${gateway.url}/mcp`);
    const posts = (): number => slack.callsOf('chat.postMessage').length;
    // Slack answers 503 to the next eight posts (about 0.5 + 1 + 2 + 4 s of backoff between tries).
    slack.failNext(
      'chat.postMessage',
      Array.from({ length: 8 }, () => ({ status: 503, body: { ok: false, error: 'service_unavailable' } })),
    );
    const before = posts();
    const expiring = client.callTool({
      name: 'DeleteCluster',
      arguments: { id: 'slack-down' },
    }) as Promise<CallToolResult>;
    const surviving = client.callTool(
      { name: 'CloneContainerToECR', arguments: { repositoryName: 'slack-back' } },
      undefined,
      { timeout: 60_000 },
    ) as Promise<CallToolResult>;
    const denied = await expiring;
    expect(denied.isError).toBe(true);
    expect(text(denied)).toContain('No decision within 2s; not executed');
    const id = await postedApprovalId(slack, 'slack-back');
    expect(posts() - before).toBeGreaterThan(8); // every failed try, then the one that got through
    await postInteraction(gateway.url, SIGNING_SECRET, clickPayload('countersign_approve', id, ALICE));
    expect(text(await surviving)).toContain('cloned into slack-back');
    // The expired one was never posted as a live request and never ran.
    await new Promise((r) => setTimeout(r, 1000));
    const livePosts = slack
      .callsOf('chat.postMessage')
      .filter((c) => c.status === 200 && JSON.stringify(c.body.blocks ?? '').includes('slack-down'));
    expect(livePosts).toHaveLength(0);
    expect((await executions(log)).filter((e) => e.args.id === 'slack-down')).toHaveLength(0);
    await client.close();
  }, 60_000);
});
