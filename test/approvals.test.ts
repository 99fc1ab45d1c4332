/**
 * Human approval end to end: a real gateway with a real Bolt app whose Web API calls go to a local fake Slack,
 * signed interaction payloads posted to /slack/events, a real redis-server, the toy MCP server upstream and
 * the SDK's Client as the agent.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { clickPayload, postInteraction, rejectSubmission, startFakeSlack } from './support/fake-slack.js';
import type { FakeSlack, SlackCall } from './support/fake-slack.js';
import { connectTestRedis } from './support/redis.js';
import {
  AGENT_TOKEN,
  ALICE,
  BOB,
  CHANNEL,
  MALLORY,
  OWNER,
  OWNER_EMAIL,
  SIGNING_SECRET,
  api,
  approvalIdOf,
  executions,
  postedApprovalId,
  sha,
  slackEnv,
  text,
  until,
} from './support/approvals.js';

const reviewers = [ALICE.id, BOB.id, OWNER.id];
const approval = (extra: Record<string, unknown>) => ({ channel: CHANNEL, reviewers, ...extra });
const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      reason: 'pushes to the production registry',
      approval: approval({ wait: 'hold', timeout: '60s', secret_args: ['args.imageUri'] }),
    },
    DeleteCluster: { action: 'require_approval', approval: approval({ wait: 'hold', timeout: 2 }) },
    DescribeCluster: {
      action: 'require_approval',
      approval: approval({ wait: 'return', timeout: '60s', max_pending: 3 }),
    },
    ListClusters: {
      action: 'require_approval',
      approval: approval({ wait: 'return', timeout: '60s', quorum: 2 }),
    },
    count: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: ['SPLATFORM'], wait: 'auto', hold_for: '1s' },
    },
  },
};

const meta = (result: CallToolResult, key: string): Record<string, unknown> =>
  (result._meta?.[key] ?? {}) as Record<string, unknown>;

describe('human approval through Slack', () => {
  let slack: FakeSlack;
  let gateway: TestGateway;
  let agent: Client;
  let dir: string;
  let log: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-approvals-'));
    log = path.join(dir, 'calls.jsonl');
    slack = await startFakeSlack();
    slack.emails.set(OWNER.id, OWNER_EMAIL);
    gateway = await startTestGateway({
      policies: { 'aws.json': POLICY },
      config: {
        servers: { aws: toyServer('aws.json', { env: { TOY_CALL_LOG: log } }) },
        grants: [{ id: 'deploy-bot', owner: OWNER_EMAIL, token_sha256: sha(AGENT_TOKEN) }],
        approvals: { progress_interval_ms: 200, poll_ms: 500, used_answer_ms: 1000 },
      },
      env: slackEnv(slack.apiUrl),
    });
    agent = await connectClient(`${gateway.url}/mcp`, { token: AGENT_TOKEN });
  });
  afterAll(async () => {
    await agent?.close();
    await gateway?.stop();
    await slack?.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    slack.calls.length = 0;
  });
  // Each test starts with no pending approvals (max_pending counts per grant).
  afterEach(async () => {
    const pending = await api(gateway.url, '/approvals?status=pending&limit=1000');
    for (const a of pending.json.approvals as { id: string }[]) {
      await api(gateway.url, `/approvals/${a.id}/reject`, {
        method: 'POST',
        body: { reviewer: BOB.id, reason: 'test cleanup' },
      });
    }
  });

  const call = (name: string, args: Record<string, unknown>, onprogress?: () => void) =>
    agent.callTool({ name, arguments: args }, undefined, {
      timeout: 30_000,
      ...(onprogress ? { onprogress, resetTimeoutOnProgress: true } : {}),
    }) as Promise<CallToolResult>;
  const posted = (predicate: (c: SlackCall) => boolean = () => true) =>
    slack.waitFor('chat.postMessage', (c) => c.body.thread_ts === undefined && predicate(c));
  const click = (action: 'countersign_approve' | 'countersign_reject', id: string, user = ALICE) =>
    postInteraction(gateway.url, SIGNING_SECRET, clickPayload(action, id, user));
  const status = async (id: string) => (await api(gateway.url, `/approvals/${id}`)).json.status;
  const ran = async (tool: string, key: string, value: string) =>
    (await executions(log)).filter((e) => e.tool === tool && e.args[key] === value);

  it('approve: the message is posted, the call runs upstream once, the agent gets its result, the message is updated', async () => {
    const pending = call('CloneContainerToECR', {
      repositoryName: 'prod-app',
      imageUri: 'secret-registry/app:1',
    });
    const message = await posted();
    expect(message.body.channel).toBe(CHANNEL);
    expect(message.token).toBe('xoxb-test-token');
    const shown = JSON.stringify(message.body.blocks);
    for (const fact of [
      'CloneContainerToECR',
      'aws',
      'deploy-bot',
      OWNER_EMAIL,
      'prod-app',
      'pushes to the production registry',
      '<@UALICE>',
      'aws.json#/tools/CloneContainerToECR/action',
    ]) {
      expect(shown).toContain(fact);
    }
    expect(shown).toContain('[secret]');
    expect(shown).not.toContain('secret-registry');
    const id = approvalIdOf(message);
    expect(shown).toContain('"action_id":"countersign_reject"');
    expect(await ran('CloneContainerToECR', 'repositoryName', 'prod-app')).toHaveLength(0);

    const res = await click('countersign_approve', id);
    expect(res.status).toBe(200);
    const result = await pending;
    expect(result.isError).toBeFalsy();
    expect(text(result)).toContain('cloned into prod-app');
    expect(await ran('CloneContainerToECR', 'repositoryName', 'prod-app')).toHaveLength(1);

    const update = await slack.waitFor('chat.update', (c) =>
      JSON.stringify(c.body.blocks).includes('Approved'),
    );
    expect(update.body.ts).toBe(message.body.ts === undefined ? update.body.ts : update.body.ts);
    expect(JSON.stringify(update.body.blocks)).toContain('<@UALICE>');
    expect((update.body.blocks as { type: string }[]).some((b) => b.type === 'actions')).toBe(false);
    const reply = await slack.waitFor('chat.postMessage', (c) => c.body.thread_ts !== undefined);
    expect(reply.body.text).toContain('Executed: CloneContainerToECR succeeded');

    const trail = await gateway.services.audit.query({ limit: 1000 });
    const mine = trail.filter((e) => e.approvalId === id);
    expect(mine.map((e) => `${e.type}:${e.reason}`)).toEqual([
      'approval:approval_requested',
      'approval:approved',
      'decision:approved',
      'result:approved',
    ]);
    expect(mine[1]?.reviewer).toBe('UALICE (alice) as email:ualice@example.com');
    expect(mine[3]?.outcome).toBe('ok');
    expect((await gateway.services.audit.verify()).ok).toBe(true);
  });

  it('reject with a reason: a modal asks why, the agent sees "Rejected by <name>: <reason>", nothing runs', async () => {
    const pending = call('CloneContainerToECR', { repositoryName: 'prod-rejected' });
    const id = approvalIdOf(await posted());
    expect((await click('countersign_reject', id, BOB)).status).toBe(200);
    const modal = await slack.waitFor('views.open');
    expect(String(modal.body.trigger_id)).toMatch(/^trigger-/);
    expect((modal.body.view as { callback_id: string }).callback_id).toBe('countersign_reject_reason');
    expect(await status(id)).toBe('pending');

    const submit = await postInteraction(
      gateway.url,
      SIGNING_SECRET,
      rejectSubmission(id, BOB, 'not during the release freeze'),
    );
    expect(submit.status).toBe(200);
    const result = await pending;
    expect(result.isError).toBe(true);
    expect(text(result)).toContain('Rejected by bob: not during the release freeze');
    expect(meta(result, 'countersign/decision')).toMatchObject({ decision: 'deny', reason: 'rejected' });
    expect(await ran('CloneContainerToECR', 'repositoryName', 'prod-rejected')).toHaveLength(0);
    const update = await slack.waitFor('chat.update', (c) =>
      JSON.stringify(c.body.blocks).includes('Rejected'),
    );
    expect(JSON.stringify(update.body.blocks)).toContain('not during the release freeze');
  });

  it('expiry: no decision in time denies the call with its own reason and marks the message Expired', async () => {
    const pending = call('DeleteCluster', { id: 'prod-eu-1' });
    const id = approvalIdOf(await posted());
    const result = await pending;
    expect(result.isError).toBe(true);
    expect(text(result)).toContain('No decision within 2s; not executed');
    expect(meta(result, 'countersign/decision')).toMatchObject({ reason: 'expired' });
    await slack.waitFor('chat.update', (c) => JSON.stringify(c.body.blocks).includes('Expired'));
    expect(await status(id)).toBe('expired');
    // A click after the expiry changes nothing.
    await click('countersign_approve', id);
    const told = await slack.waitFor('chat.postEphemeral');
    expect(told.body.text).toMatch(/^already expired at /);
    expect(await ran('DeleteCluster', 'id', 'prod-eu-1')).toHaveLength(0);
  });

  it('forged signatures and stale or future timestamps get 401 and change nothing', async () => {
    const pending = await call('DescribeCluster', { id: 'forgery' });
    const id = String(meta(pending, 'countersign/approval').id);
    const payload = clickPayload('countersign_approve', id, ALICE);
    const now = Math.floor(Date.now() / 1000);
    const attempts = [
      await postInteraction(gateway.url, 'wrong-secret', payload),
      await postInteraction(gateway.url, SIGNING_SECRET, payload, { timestamp: now - 600 }),
      await postInteraction(gateway.url, SIGNING_SECRET, payload, { timestamp: now + 600 }),
      await postInteraction(gateway.url, SIGNING_SECRET, payload, { signature: 'v0=00' }),
    ];
    expect(attempts.map((r) => r.status)).toEqual([401, 401, 401, 401]);
    // Signed, but not a payload Slack would send: no state change either.
    const garbage = await postInteraction(
      gateway.url,
      SIGNING_SECRET,
      '{"type":"block_actions","actions":"nope"}',
    );
    expect(garbage.status).toBeLessThan(500);
    expect(await status(id)).toBe('pending');
    expect(slack.callsOf('chat.update')).toHaveLength(0);
  });

  it("a non-reviewer's click, the owner's own click and an unknown approval id change nothing, and are told why", async () => {
    const pending = await call('DescribeCluster', { id: 'who-decides' });
    const id = String(meta(pending, 'countersign/approval').id);

    await click('countersign_approve', id, MALLORY);
    expect((await slack.waitFor('chat.postEphemeral', (c) => c.body.user === MALLORY.id)).body.text).toBe(
      'you are not a reviewer for this approval; nothing changed',
    );
    await click('countersign_approve', id, OWNER);
    expect((await slack.waitFor('chat.postEphemeral', (c) => c.body.user === OWNER.id)).body.text).toContain(
      'you own the grant that made this call (olga@example.com), so you cannot approve it',
    );
    await click('countersign_approve', '01JUNKNOWNAPPROVAL000000000', ALICE);
    expect((await slack.waitFor('chat.postEphemeral', (c) => c.body.user === ALICE.id)).body.text).toContain(
      'no approval with id',
    );
    expect(await status(id)).toBe('pending');

    const refused = (await gateway.services.audit.query({ type: 'approval', limit: 1000 })).filter(
      (e) => e.approvalId === id && e.reason === 'reviewer_refused',
    );
    expect(refused.map((e) => e.reviewer)).toEqual([
      'UMALLORY (mallory) as email:umallory@example.com',
      `UOWNER (olga) as email:${OWNER_EMAIL}`,
    ]);
  });

  it('20 concurrent clicks on one approval: exactly one decision and one execution', async () => {
    const pending = call('CloneContainerToECR', { repositoryName: 'prod-race' });
    const id = approvalIdOf(await posted());
    const clicks = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        click(i % 3 === 2 ? 'countersign_reject' : 'countersign_approve', id, i % 2 ? ALICE : BOB),
      ),
    );
    expect(clicks.every((r) => r.status === 200)).toBe(true);
    const result = await pending;
    const decided = (await gateway.services.audit.query({ type: 'approval', limit: 1000 })).filter(
      (e) => e.approvalId === id && ['approved', 'rejected'].includes(e.reason ?? ''),
    );
    expect(decided).toHaveLength(1);
    const runs = await ran('CloneContainerToECR', 'repositoryName', 'prod-race');
    if (decided[0]?.reason === 'approved') {
      expect(runs).toHaveLength(1);
      expect(text(result)).toContain('cloned into prod-race');
    } else {
      expect(runs).toHaveLength(0);
    }
    // The losers were told it was already decided.
    await until(
      async () => (slack.callsOf('chat.postEphemeral').length >= 5 ? true : undefined),
      10_000,
      'ephemeral answers',
    );
    expect(
      slack
        .callsOf('chat.postEphemeral')
        .every(
          (c) =>
            /^already (approved|rejected) by (alice|bob) at /.test(String(c.body.text)) ||
            String(c.body.text).startsWith('you have already'),
        ),
    ).toBe(true);
  });

  it('Slack answering 500, then 429 with Retry-After, then 200: the message is posted and the call still resolves', async () => {
    slack.failNext('chat.postMessage', [
      { status: 500, body: { ok: false, error: 'internal_error' } },
      { status: 429, headers: { 'retry-after': '1' }, body: { ok: false, error: 'ratelimited' } },
    ]);
    const pending = call('CloneContainerToECR', { repositoryName: 'prod-flaky-slack' });
    await until(
      async () => (slack.callsOf('chat.postMessage').length >= 3 ? true : undefined),
      15_000,
      'three attempts',
    );
    const attempts = slack.callsOf('chat.postMessage');
    // The retry after the 429 waited for Retry-After.
    expect((attempts[2]?.at ?? 0) - (attempts[1]?.at ?? 0)).toBeGreaterThanOrEqual(950);
    const id = approvalIdOf(attempts[2] as SlackCall);
    await click('countersign_approve', id);
    expect(text(await pending)).toContain('cloned into prod-flaky-slack');
  });

  it('wait "return": pending at once; the identical retry returns the outcome, the result once', async () => {
    const first = await call('DescribeCluster', { id: 'retry-me' });
    expect(first.isError).toBeFalsy();
    const info = meta(first, 'countersign/approval');
    expect(info).toMatchObject({ status: 'pending', channel: CHANNEL });
    expect(text(first)).toMatch(
      /^Approval pending \(id [0-9A-Z]{26}\): a reviewer has been asked in Slack channel C0APPROVALS\./,
    );
    expect(text(first)).toContain('Call the same tool with the same arguments again for the outcome');

    const again = await call('DescribeCluster', { id: 'retry-me' });
    expect(meta(again, 'countersign/approval').id).toBe(info.id);
    // Different arguments are a different approval.
    const other = await call('DescribeCluster', { id: 'retry-me-too' });
    expect(meta(other, 'countersign/approval').id).not.toBe(info.id);

    const approved = await api(gateway.url, `/approvals/${String(info.id)}/approve`, {
      method: 'POST',
      body: { reviewer: ALICE.id },
    });
    expect(approved.status).toBe(200);
    // The session is alive: the call runs on approval and its result waits for the retry.
    await until(
      async () => ((await ran('DescribeCluster', 'id', 'retry-me')).length === 1 ? true : undefined),
      10_000,
      'the execution',
    );
    const outcome = await call('DescribeCluster', { id: 'retry-me' });
    expect(outcome.isError).toBeFalsy();
    expect(text(outcome)).toContain('"tool":"DescribeCluster"');
    // Single use: an identical call right after is told the result was delivered (nothing runs again) ...
    const used = await call('DescribeCluster', { id: 'retry-me' });
    expect(used.isError).toBe(true);
    expect(text(used)).toContain(`approval ${String(info.id)} was already used`);
    // ... and once `used_answer_ms` is over, the next identical call asks for a new approval.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const fresh = await call('DescribeCluster', { id: 'retry-me' });
    expect(text(fresh)).toMatch(/^Approval pending/);
    expect(meta(fresh, 'countersign/approval').id).not.toBe(info.id);
    expect(await ran('DescribeCluster', 'id', 'retry-me')).toHaveLength(1);

    // A rejection is told once to the retry, then the call can be asked again.
    await api(gateway.url, `/approvals/${String(meta(fresh, 'countersign/approval').id)}/reject`, {
      method: 'POST',
      body: { reviewer: BOB.id, reason: 'no' },
    });
    const rejected = await call('DescribeCluster', { id: 'retry-me' });
    expect(rejected.isError).toBe(true);
    expect(text(rejected)).toContain('Rejected by UBOB: no');
    const askedAgain = await call('DescribeCluster', { id: 'retry-me' });
    expect(text(askedAgain)).toMatch(/^Approval pending/);
  });

  it('max_pending: a grant cannot park more calls than the policy allows', async () => {
    const parked = [];
    for (const id of ['mp-1', 'mp-2', 'mp-3']) parked.push(await call('DescribeCluster', { id }));
    expect(parked.every((r) => meta(r, 'countersign/approval').status === 'pending')).toBe(true);
    const fourth = await call('DescribeCluster', { id: 'mp-4' });
    expect(fourth.isError).toBe(true);
    expect(meta(fourth, 'countersign/decision')).toMatchObject({ reason: 'too_many_pending' });
    expect(text(fourth)).toContain('already has 3 calls waiting for approval (max_pending 3)');
  });

  it('wait "hold" sends progress notifications while the client waits', async () => {
    let progress = 0;
    const pending = call('CloneContainerToECR', { repositoryName: 'prod-progress' }, () => {
      progress += 1;
    });
    const id = approvalIdOf(await posted((c) => JSON.stringify(c.body.blocks).includes('prod-progress')));
    await until(async () => (progress >= 3 ? true : undefined), 10_000, 'three progress notifications');
    await click('countersign_approve', id);
    expect(text(await pending)).toContain('cloned into prod-progress');
  });

  it('wait "auto": holds for hold_for, then answers pending; a user-group member approves; the retry gets the result', async () => {
    slack.groups.set('SPLATFORM', ['UCAROL']);
    const started = Date.now();
    const first = await call('count', {});
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(text(first)).toMatch(/^Approval pending/);
    const id = String(meta(first, 'countersign/approval').id);
    await click('countersign_approve', id, ALICE);
    expect((await slack.waitFor('chat.postEphemeral', (c) => c.body.user === ALICE.id)).body.text).toBe(
      'you are not a reviewer for this approval; nothing changed',
    );
    await click('countersign_approve', id, { id: 'UCAROL', username: 'carol' });
    expect((await slack.waitFor('usergroups.users.list')).body.usergroup).toBe('SPLATFORM');
    await until(
      async () => ((await api(gateway.url, `/approvals/${id}`)).json.execution === 'done' ? true : undefined),
      10_000,
      'the execution',
    );
    const outcome = await call('count', {});
    expect(outcome.isError).toBeFalsy();
    expect(text(outcome)).toMatch(/^\d+$/);
  });

  it('a held call whose approval can no longer be read is answered when its hold ends, not left waiting', async () => {
    const held = call('count', { marker: 'unreadable-record' });
    const id = await postedApprovalId(slack, 'unreadable-record');
    // The call's stored parts vanish (say an eviction policy took them): the record cannot be read any more,
    // though its status field still says pending.
    const redis = await connectTestRedis();
    try {
      await redis.del(`${gateway.prefix}approval:${id}:call`);
      expect(await redis.hget(`${gateway.prefix}approval:${id}`, 'status')).toBe('pending');
      const answer = await held;
      expect(answer.isError).toBe(true);
      expect(text(answer)).toContain(`approval ${id} no longer exists`);
    } finally {
      // What is left of it goes, so the other tests see no pending approval.
      await redis.del(`${gateway.prefix}approval:${id}`);
      for (const index of await redis.keys(`${gateway.prefix}approvals:*`))
        if ((await redis.type(index)) === 'zset') await redis.zrem(index, id);
      redis.disconnect();
    }
  });

  it('quorum: each distinct approver counts once; the second one approves', async () => {
    const first = await call('ListClusters', { id: 'quorum' });
    const id = String(meta(first, 'countersign/approval').id);
    const one = await api(gateway.url, `/approvals/${id}/approve`, {
      method: 'POST',
      body: { reviewer: ALICE.id },
    });
    expect(one.json).toMatchObject({ status: 'pending', votes: 1 });
    const twice = await api(gateway.url, `/approvals/${id}/approve`, {
      method: 'POST',
      body: { reviewer: ALICE.id },
    });
    expect(twice.status).toBe(409);
    expect(twice.json.error).toBe('you have already approved this (1 of 2 approvals)');
    const two = await api(gateway.url, `/approvals/${id}/approve`, {
      method: 'POST',
      body: { reviewer: BOB.id },
    });
    expect(two.json).toMatchObject({ status: 'approved', votes: 2 });
    await until(
      async () => ((await ran('ListClusters', 'id', 'quorum')).length === 1 ? true : undefined),
      10_000,
      'the execution',
    );
  });

  it('the approvals API: token required, reviewer rules apply, unknown ids and bad bodies are refused', async () => {
    const parked = await call('DescribeCluster', { id: 'api' });
    const id = String(meta(parked, 'countersign/approval').id);
    expect((await api(gateway.url, '/approvals', { token: 'wrong-token-wrong-token' })).status).toBe(401);
    const list = await api(gateway.url, '/approvals?status=pending');
    expect((list.json.approvals as { id: string }[]).map((a) => a.id)).toContain(id);
    const shown = await api(gateway.url, `/approvals/${id}`);
    expect(shown.json).toMatchObject({
      id,
      status: 'pending',
      tool: 'DescribeCluster',
      grant: 'deploy-bot',
      owner: OWNER_EMAIL,
    });
    expect(
      (await api(gateway.url, `/approvals/${id}/approve`, { method: 'POST', body: { reviewer: MALLORY.id } }))
        .status,
    ).toBe(403);
    expect(
      (
        await api(gateway.url, `/approvals/${id}/approve`, {
          method: 'POST',
          body: { reviewer: OWNER_EMAIL },
        })
      ).status,
    ).toBe(403);
    expect(
      (await api(gateway.url, `/approvals/NOPE/approve`, { method: 'POST', body: { reviewer: ALICE.id } }))
        .status,
    ).toBe(404);
    expect(
      (await api(gateway.url, `/approvals/${id}/approve`, { method: 'POST', body: '{"reviewer":' })).status,
    ).toBe(400);
    expect(
      (
        await api(gateway.url, `/approvals/${id}/approve`, {
          method: 'POST',
          body: { reviewer: ALICE.id, extra: 1 },
        })
      ).status,
    ).toBe(400);
    expect(await status(id)).toBe('pending');
    expect(
      (
        await api(gateway.url, `/approvals/${id}/reject`, {
          method: 'POST',
          body: { reviewer: ALICE.id, reason: 'api' },
        })
      ).status,
    ).toBe(200);
    const again = await api(gateway.url, `/approvals/${id}/approve`, {
      method: 'POST',
      body: { reviewer: BOB.id },
    });
    expect(again.status).toBe(409);
    expect(again.json.error).toMatch(/^already rejected by UALICE at \d{4}-/);
  });
});
