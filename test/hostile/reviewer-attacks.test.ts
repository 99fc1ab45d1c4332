/**
 * Reviewers are people, tried as a dishonest reviewer would: the grant owner, or one person voting twice,
 * under a form of their identity the operator wrote in the config. A real gateway, the Bolt app receiving
 * signed payloads, the local fake Slack answering users.info, a real redis-server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway, toyServer } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import { clickPayload, postInteraction, startFakeSlack } from '../support/fake-slack.js';
import type { FakeSlack, SlackUser } from '../support/fake-slack.js';
import { SIGNING_SECRET, api, sha, slackEnv, until } from '../support/approvals.js';

// Olga's Slack handle is not her directory id: only the directory ties her Slack id to "olga".
const OLGA: SlackUser = { id: 'U0OLGA', username: 'olga.p' };
const ERIN: SlackUser = { id: 'U0ERIN', username: 'erin' };
/**
 * The directory names each person by an id, and lists their other identifiers. The grant owners below are
 * written as those ids: "olga" (a name) and "quinn@example.com" (an id that is an email, which the schema
 * allows). Neither id is repeated among the identifiers.
 */
const PEOPLE = [
  { id: 'olga', identifiers: ['U0OLGA', 'olga@example.com'] },
  { id: 'quinn@example.com', identifiers: ['U0QUINN'] },
];
const QUINN: SlackUser = { id: 'U0QUINN', username: 'qq' };
const reviewers = ['U0OLGA', 'olga', 'U0QUINN', 'U0ERIN'];
const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    DescribeCluster: { action: 'require_approval', approval: { reviewers, wait: 'return', timeout: '10m' } },
    ListClusters: {
      action: 'require_approval',
      approval: { reviewers, wait: 'return', timeout: '10m', quorum: 2 },
    },
  },
};
const TOKENS = { olga: 'agent-token-owner-olga-0001', quinn: 'agent-token-owner-quinn-002' };

describe('a person is known by their directory id too', () => {
  let slack: FakeSlack;
  let gateway: TestGateway;
  const agents: Partial<Record<keyof typeof TOKENS, Client>> = {};

  beforeAll(async () => {
    slack = await startFakeSlack();
    gateway = await startTestGateway({
      policies: { 'aws.json': POLICY },
      config: {
        servers: { aws: toyServer('aws.json') },
        grants: [
          { id: 'bot-olga', owner: 'olga', token_sha256: sha(TOKENS.olga) },
          { id: 'bot-quinn', owner: 'quinn@example.com', token_sha256: sha(TOKENS.quinn) },
        ],
        people: PEOPLE,
      },
      env: slackEnv(slack.apiUrl),
    });
    for (const [name, token] of Object.entries(TOKENS))
      agents[name as keyof typeof TOKENS] = await connectClient(`${gateway.url}/mcp`, { token });
  });
  afterAll(async () => {
    for (const agent of Object.values(agents)) await agent?.close();
    await gateway?.stop();
    await slack?.close();
  });

  const park = async (grant: keyof typeof TOKENS, tool: string, marker: string): Promise<string> => {
    const result = (await agents[grant]?.callTool({
      name: tool,
      arguments: { id: marker },
    })) as CallToolResult;
    const id = (result._meta?.['countersign/approval'] as { id?: string } | undefined)?.id;
    if (!id) throw new Error(`not parked: ${JSON.stringify(result)}`);
    return id;
  };
  const record = async (id: string) => (await api(gateway.url, `/approvals/${id}`)).json;
  /**
   * Clicks Approve as `user`, and waits for the outcome: an ephemeral answer to them, or the approval decided.
   * Returns the answer ('' when none came) and the record.
   */
  const clickApprove = async (
    id: string,
    user: SlackUser,
  ): Promise<{ told: string; record: Record<string, unknown> }> => {
    const before = slack.callsOf('chat.postEphemeral').length;
    await postInteraction(gateway.url, SIGNING_SECRET, clickPayload('countersign_approve', id, user));
    return until(
      async () => {
        const answer = slack
          .callsOf('chat.postEphemeral')
          .slice(before)
          .find((c) => c.body.user === user.id);
        const now = await record(id);
        if (answer) return { told: String(answer.body.text), record: now };
        return now.status !== 'pending' ? { told: '', record: now } : undefined;
      },
      15_000,
      `the outcome of ${user.id}'s click`,
    );
  };

  it('an owner written as their directory id cannot approve in Slack, under a name or an email id; another reviewer can', async () => {
    const byName = await park('olga', 'DescribeCluster', 'owner-directory-id');
    const olga = await clickApprove(byName, OLGA);
    expect(olga.record).toMatchObject({ status: 'pending', votes: 0 });
    expect(olga.told).toContain('you own the grant that made this call (olga)');

    const byEmailId = await park('quinn', 'DescribeCluster', 'owner-directory-email-id');
    const quinn = await clickApprove(byEmailId, QUINN);
    expect(quinn.record).toMatchObject({ status: 'pending', votes: 0 });
    expect(quinn.told).toContain('you own the grant that made this call (quinn@example.com)');

    // Positive control: someone else approves both.
    for (const id of [byName, byEmailId])
      expect((await clickApprove(id, ERIN)).record).toMatchObject({ status: 'approved' });
  });

  it('a person voting under their directory id (API) and their Slack id counts once towards a quorum of 2', async () => {
    // Quinn's agent parks it, so Olga is no owner here.
    const id = await park('quinn', 'ListClusters', 'quorum-directory-id');
    const viaApi = await api(gateway.url, `/approvals/${id}/approve`, {
      method: 'POST',
      body: { reviewer: 'olga' },
    });
    expect(viaApi.status, JSON.stringify(viaApi.json)).toBe(200);
    const again = await clickApprove(id, OLGA);
    expect(again.record).toMatchObject({ status: 'pending', votes: 1 });
    expect(again.told).toContain('you have already approved this');
  });
});
