/**
 * Reviewers are people, not identifiers: a real gateway, a real Bolt app behind real HTTP receiving signed
 * payloads, the local fake Slack answering users.info, a real redis-server. One person votes once whatever
 * identifier they use; the grant owner is recognised in any form; an identity that cannot be established never
 * counts; and interactions from another workspace or app change nothing.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { clickPayload, postInteraction, rejectSubmission, startFakeSlack } from './support/fake-slack.js';
import type { FakeSlack, ScriptedReply, SlackUser } from './support/fake-slack.js';
import { connectTestRedis } from './support/redis.js';
import { SIGNING_SECRET, api, sha, slackEnv, until } from './support/approvals.js';

const ALICE: SlackUser = { id: 'U0ALICE', username: 'alice' };
const BOB: SlackUser = { id: 'U0BOB', username: 'bob' };
const ERIN: SlackUser = { id: 'U0ERIN', username: 'erin' };
const OLGA: SlackUser = { id: 'U0OLGA', username: 'olga' };

/** Alice is in the directory (no users.info needed); the others are known by their Slack profile email. */
const PEOPLE = [{ id: 'alice', identifiers: ['U0ALICE', 'alice', 'alice@corp.example', 'alice.smith'] }];
// "bob" is also listed as a local name (for the CLI) that nothing ties to U0BOB but his Slack handle.
const reviewers = ['U0ALICE', 'U0BOB', 'bob', 'erin@example.com', 'olga@example.com', 'U0OLGA'];
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
/** Grants whose owner is written as an email, as a Slack id, and as a directory name. */
const TOKENS = {
  email: 'agent-token-owner-email-0001',
  slack: 'agent-token-owner-slack-0002',
  directory: 'agent-token-owner-dir-00003',
};

describe('reviewers are people, not identifiers', () => {
  let slack: FakeSlack;
  let gateway: TestGateway;
  const agents: Partial<Record<keyof typeof TOKENS, Client>> = {};

  beforeAll(async () => {
    slack = await startFakeSlack();
    slack.emails.set(ERIN.id, 'Erin@Example.com');
    slack.emails.set(OLGA.id, 'olga@example.com');
    gateway = await startTestGateway({
      policies: { 'aws.json': POLICY },
      config: {
        servers: { aws: toyServer('aws.json') },
        grants: [
          { id: 'bot-email', owner: 'olga@example.com', token_sha256: sha(TOKENS.email) },
          { id: 'bot-slack', owner: 'U0OLGA', token_sha256: sha(TOKENS.slack) },
          { id: 'bot-dir', owner: 'alice.smith', token_sha256: sha(TOKENS.directory) },
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
  beforeEach(() => {
    slack.calls.length = 0;
  });

  /** Parks a call of `grant`'s agent (wait "return") and gives its approval id. */
  const park = async (grant: keyof typeof TOKENS, tool: string, marker: string): Promise<string> => {
    const result = (await agents[grant]?.callTool({
      name: tool,
      arguments: { id: marker },
    })) as CallToolResult;
    const id = (result._meta?.['countersign/approval'] as { id?: string } | undefined)?.id;
    if (!id) throw new Error(`not parked: ${JSON.stringify(result)}`);
    return id;
  };
  const click = (id: string, user: SlackUser, change: Record<string, unknown> = {}) =>
    postInteraction(gateway.url, SIGNING_SECRET, {
      ...clickPayload('countersign_approve', id, user),
      ...change,
    });
  /** The next ephemeral answer to `user` (after `seen` earlier ones). */
  const told = async (user: SlackUser, seen = 0): Promise<string> => {
    const answers = await until(
      async () => {
        const mine = slack.callsOf('chat.postEphemeral').filter((c) => c.body.user === user.id);
        return mine.length > seen ? mine : undefined;
      },
      15_000,
      `an ephemeral answer to ${user.id}`,
    );
    return String(answers[seen]?.body.text);
  };
  const approveViaApi = (id: string, reviewer: string) =>
    api(gateway.url, `/approvals/${id}/approve`, { method: 'POST', body: { reviewer } });
  const record = async (id: string) => (await api(gateway.url, `/approvals/${id}`)).json;
  const refusals = async (id: string) =>
    (await gateway.services.audit.query({ type: 'approval', limit: 1000 })).filter(
      (e) => e.approvalId === id && e.reason === 'reviewer_refused',
    );

  it('an owner whose users.info lookup fails (500, 429, user_not_found, no email, timeout) cannot approve; another reviewer can', async () => {
    const id = await park('email', 'DescribeCluster', 'owner-lookup-fails');
    const failures: ScriptedReply[] = [
      { status: 500, body: { ok: false, error: 'internal_error' } },
      { status: 429, headers: { 'retry-after': '30' }, body: { ok: false, error: 'ratelimited' } },
      { status: 200, body: { ok: false, error: 'user_not_found' } },
      { status: 200, body: { ok: true, user: { id: OLGA.id, profile: {} } } },
      {
        status: 200,
        delayMs: 7_000,
        body: { ok: true, user: { id: OLGA.id, profile: { email: 'x@example.com' } } },
      },
    ];
    for (const [index, failure] of failures.entries()) {
      slack.failNext('users.info', [failure]);
      expect((await click(id, OLGA)).status).toBe(200);
      expect(await told(OLGA, index)).toMatch(
        /^the identity of U0OLGA could not be established \(.+\), so your approval does not count; nothing changed/,
      );
      expect(await record(id)).toMatchObject({ status: 'pending', votes: 0 });
    }
    const why = (await refusals(id)).map((e) => e.message);
    expect(why).toHaveLength(5);
    expect(why[0]).toContain("Slack's users.info failed with HTTP 500");
    expect(why[1]).toContain('Slack rate-limited users.info');
    expect(why[2]).toContain("Slack's users.info answered user_not_found");
    expect(why[3]).toContain('shows no email for U0OLGA');
    expect(why[4]).toContain('did not answer within 5000 ms');

    // Positive control: another reviewer, whose identity Slack does tell, approves.
    await click(id, BOB);
    await until(
      async () => ((await record(id)).status === 'approved' ? true : undefined),
      10_000,
      'approval',
    );
  }, 60_000);

  it('an owner written as a Slack id whose lookup fails: no approval counts until it can be checked', async () => {
    const id = await park('slack', 'DescribeCluster', 'owner-is-a-slack-id');
    slack.failNext('users.info', [{ status: 500, body: { ok: false, error: 'internal_error' } }]);
    // Alice is in the directory: only the owner's identity is missing, and that is enough to refuse.
    await click(id, ALICE);
    expect(await told(ALICE)).toMatch(/^the identity of U0OLGA could not be established .* self-approval/);
    expect(await record(id)).toMatchObject({ status: 'pending', votes: 0 });
    // The owner, named to the API by her email, is recognised once Slack tells U0OLGA's email.
    const own = await approveViaApi(id, 'olga@example.com');
    expect(own.status).toBe(403);
    expect(own.json.code).toBe('self_approval');
    await click(id, ALICE);
    await until(
      async () => ((await record(id)).status === 'approved' ? true : undefined),
      10_000,
      'approval',
    );
  });

  it('the owner is refused in any form: email owner via Slack id, Slack-id owner via email, and via the directory', async () => {
    const byEmail = await park('email', 'DescribeCluster', 'owner-email-approves-in-slack');
    await click(byEmail, OLGA);
    expect(await told(OLGA)).toContain('you own the grant that made this call (olga@example.com)');

    const bySlackId = await park('slack', 'DescribeCluster', 'owner-slack-id-approves-by-email');
    expect((await approveViaApi(bySlackId, 'OLGA@example.com')).json.code).toBe('self_approval');

    const byDirectory = await park('directory', 'DescribeCluster', 'owner-directory-name');
    await click(byDirectory, ALICE);
    expect(await told(ALICE)).toContain('you own the grant that made this call (alice.smith)');
    for (const identifier of ['alice', 'alice@corp.example', 'U0ALICE'])
      expect((await approveViaApi(byDirectory, identifier)).json.code).toBe('self_approval');

    for (const id of [byEmail, bySlackId, byDirectory]) {
      expect(await record(id)).toMatchObject({ status: 'pending', votes: 0 });
      expect((await approveViaApi(id, 'erin@example.com')).json.status).toBe('approved');
    }
    expect((await refusals(byDirectory)).map((e) => e.reviewer)).toEqual([
      'U0ALICE (alice) as person:alice',
      'alice as person:alice',
      'alice@corp.example as person:alice',
      'U0ALICE as person:alice',
    ]);
  });

  it('one person under two identifiers counts once towards a quorum of 2; two people reach it', async () => {
    const redis = await connectTestRedis();
    try {
      // By Slack profile email: Erin clicks in Slack, then names herself to the API by email.
      const byEmail = await park('email', 'ListClusters', 'quorum-by-email');
      await click(byEmail, ERIN);
      expect(await told(ERIN)).toBe('approval counted: 1 of 2');
      for (const again of ['erin@example.com', 'ERIN@Example.COM', 'U0ERIN']) {
        const twice = await approveViaApi(byEmail, again);
        expect(twice.status).toBe(409);
        expect(twice.json.code).toBe('already_voted');
      }
      expect(await record(byEmail)).toMatchObject({ status: 'pending', votes: 1 });

      // By the directory: Alice's Slack id, her handle, her email and her local name are one person.
      const byDirectory = await park('email', 'ListClusters', 'quorum-by-directory');
      expect((await approveViaApi(byDirectory, 'alice')).json).toMatchObject({ status: 'pending', votes: 1 });
      for (const again of ['alice.smith', 'Alice@Corp.example', 'U0ALICE'])
        expect((await approveViaApi(byDirectory, again)).json.code).toBe('already_voted');
      // ...and in Slack, where her handle is "alice" and her id U0ALICE.
      await click(byDirectory, ALICE);
      expect(await told(ALICE)).toBe('you have already approved this (1 of 2 approvals)');
      expect(await record(byDirectory)).toMatchObject({ status: 'pending', votes: 1 });

      // Two different people reach the quorum.
      await click(byDirectory, BOB);
      await until(
        async () => ((await record(byDirectory)).status === 'approved' ? true : undefined),
        10_000,
        'quorum',
      );
      expect((await approveViaApi(byEmail, 'U0BOB')).json).toMatchObject({ status: 'approved', votes: 2 });
      // The approvers set counts people (and keeps every identifier that could be theirs, as `id:` tokens).
      const approvers = await redis.smembers(`${gateway.prefix}approval:${byEmail}:approvers`);
      expect(approvers.filter((m) => !m.startsWith('id:')).sort()).toEqual([
        'email:erin@example.com',
        'email:u0bob@example.com',
      ]);
    } finally {
      redis.disconnect();
    }
  });

  it('a look-alike counts as the same person for quorum: Slack handle "bob" and API name "bob" vote once', async () => {
    const id = await park('email', 'ListClusters', 'quorum-look-alike');
    await click(id, BOB);
    expect(await told(BOB)).toBe('approval counted: 1 of 2');
    // Nothing proves the CLI's "bob" is U0BOB (handle bob), nor that he is not: one vote is the safe count.
    const twice = await approveViaApi(id, 'bob');
    expect(twice.status).toBe(409);
    expect(twice.json.code).toBe('already_voted');
    expect(await record(id)).toMatchObject({ status: 'pending', votes: 1 });
    // The second vote is audited: it is how one person would try to reach a quorum alone.
    expect((await refusals(id)).map((e) => e.message)).toEqual([
      expect.stringMatching(
        /^bob tried to approve: you have already approved this \(1 of 2 approvals\): this person/,
      ),
    ]);
    // Someone else completes the quorum.
    expect((await approveViaApi(id, 'erin@example.com')).json).toMatchObject({
      status: 'approved',
      votes: 2,
    });
  });

  it('an API reviewer whose identity cannot be established gets 503 identity_unknown and nothing counts', async () => {
    const id = await park('email', 'DescribeCluster', 'api-identity-unknown');
    slack.failNext('users.info', [{ status: 503, body: { ok: false, error: 'service_unavailable' } }]);
    // U0DAVE has not been looked up before (a success is kept for a minute; a failure is not kept).
    const answer = await approveViaApi(id, 'U0DAVE');
    expect(answer.status).toBe(503);
    expect(answer.json).toMatchObject({ code: 'identity_unknown' });
    expect(String(answer.json.error)).toContain('the identity of U0DAVE could not be established');
    expect(await record(id)).toMatchObject({ status: 'pending', votes: 0 });
    expect(await refusals(id)).toHaveLength(1);
    // Asked again, Slack answers: Dave is known now, and he is no reviewer.
    expect((await approveViaApi(id, 'U0DAVE')).json.code).toBe('not_reviewer');
  });

  it('an interaction from another workspace or app is refused, audited, and changes nothing', async () => {
    const id = await park('email', 'DescribeCluster', 'foreign-interaction');
    const forged = [
      { team: { id: 'T2', domain: 'evil' } },
      { api_app_id: 'A2' },
      { team: null },
      { api_app_id: undefined },
    ];
    for (const change of forged) expect((await click(id, BOB, change)).status).toBe(200);
    const submission = { ...rejectSubmission(id, BOB, 'from elsewhere'), team: { id: 'T2' } };
    expect((await postInteraction(gateway.url, SIGNING_SECRET, submission)).status).toBe(200);
    const refused = await until(
      async () => {
        const found = await refusals(id);
        return found.length >= 5 ? found : undefined;
      },
      10_000,
      'five audited refusals',
    );
    expect(refused.map((e) => e.message)).toEqual([
      'slack user U0BOB (bob) tried to approve: interaction from workspace "T2", not the configured one; nothing changed',
      'slack user U0BOB (bob) tried to approve: interaction for app "A2", not the configured one; nothing changed',
      'slack user U0BOB (bob) tried to approve: interaction from workspace null, not the configured one; nothing changed',
      'slack user U0BOB (bob) tried to approve: interaction for app null, not the configured one; nothing changed',
      'slack user U0BOB (bob) tried to reject: interaction from workspace "T2", not the configured one; nothing changed',
    ]);
    expect(await record(id)).toMatchObject({ status: 'pending', votes: 0 });
    expect(slack.callsOf('chat.postEphemeral')).toHaveLength(0);
    expect(slack.callsOf('users.info')).toHaveLength(0);
    // Positive control: the same click from the configured workspace and app decides.
    await click(id, BOB);
    await until(
      async () => ((await record(id)).status === 'approved' ? true : undefined),
      10_000,
      'approval',
    );
  });
});
