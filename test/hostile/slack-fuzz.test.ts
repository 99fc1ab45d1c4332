/**
 * Hostile input at /slack/events: whatever arrives — unsigned, badly signed, malformed, or validly signed but
 * naming unknown, expired or already-decided approvals — the answer is never a 5xx and no approval changes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, startTestGateway, toyServer } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import {
  clickPayload,
  postInteraction,
  rejectSubmission,
  slackSignature,
  startFakeSlack,
} from '../support/fake-slack.js';
import type { FakeSlack } from '../support/fake-slack.js';
import {
  AGENT_TOKEN,
  ALICE,
  BOB,
  CHANNEL,
  SIGNING_SECRET,
  api,
  executions,
  sha,
  slackEnv,
  until,
} from '../support/approvals.js';

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    CloneContainerToECR: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id, BOB.id], wait: 'return', timeout: '10m' },
    },
    DeleteCluster: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id, BOB.id], wait: 'return', timeout: '1s' },
    },
  },
};

describe('Slack payload fuzzing', () => {
  let slack: FakeSlack;
  let gateway: TestGateway;
  let agent: Client;
  let dir: string;
  const ids: Record<'pending' | 'rejected' | 'expired', string> = { pending: '', rejected: '', expired: '' };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-slack-fuzz-'));
    slack = await startFakeSlack();
    gateway = await startTestGateway({
      policies: { 'aws.json': POLICY },
      config: {
        servers: { aws: toyServer('aws.json', { env: { TOY_CALL_LOG: path.join(dir, 'calls.jsonl') } }) },
        grants: [{ id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) }],
      },
      env: slackEnv(slack.apiUrl),
    });
    agent = await connectClient(`${gateway.url}/mcp`, { token: AGENT_TOKEN });
    const park = async (name: string, args: Record<string, string>): Promise<string> => {
      const result = (await agent.callTool({ name, arguments: args })) as CallToolResult;
      return (result._meta?.['countersign/approval'] as { id: string }).id;
    };
    ids.pending = await park('CloneContainerToECR', { repositoryName: 'fuzz-pending' });
    ids.rejected = await park('CloneContainerToECR', { repositoryName: 'fuzz-rejected' });
    await api(gateway.url, `/approvals/${ids.rejected}/reject`, {
      method: 'POST',
      body: { reviewer: BOB.id, reason: 'fuzz' },
    });
    ids.expired = await park('DeleteCluster', { id: 'fuzz-expired' });
    await until(
      async () =>
        (await api(gateway.url, `/approvals/${ids.expired}`)).json.status === 'expired' ? true : undefined,
      10_000,
      'the 1-second approval to expire',
    );
  });
  afterAll(async () => {
    await agent?.close();
    await gateway?.stop();
    await slack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const unchanged = async (): Promise<void> => {
    expect((await api(gateway.url, `/approvals/${ids.pending}`)).json).toMatchObject({
      status: 'pending',
      votes: 0,
    });
    expect((await api(gateway.url, `/approvals/${ids.rejected}`)).json).toMatchObject({
      status: 'rejected',
      decidedBy: BOB.id,
    });
    const expired = (await api(gateway.url, `/approvals/${ids.expired}`)).json;
    expect(expired).toMatchObject({ status: 'expired', votes: 0 });
    expect(expired.decidedBy).toBeUndefined();
    expect(await executions(path.join(dir, 'calls.jsonl'))).toHaveLength(0);
  };

  it('unsigned, forged or malformed requests get 401 or 400, never anything else, and change nothing', async () => {
    const header = fc.oneof(fc.constant(undefined), fc.string({ maxLength: 40 }), fc.integer().map(String));
    await fc.assert(
      fc.asyncProperty(
        fc.string({ maxLength: 300 }),
        header,
        header,
        fc.boolean(),
        async (body, timestamp, signature, urlencoded) => {
          const headers: Record<string, string> = {
            'content-type': urlencoded ? 'application/x-www-form-urlencoded' : 'application/json',
          };
          if (timestamp !== undefined) headers['x-slack-request-timestamp'] = timestamp;
          if (signature !== undefined) headers['x-slack-signature'] = signature;
          const res = await fetch(`${gateway.url}/slack/events`, { method: 'POST', headers, body });
          expect([400, 401]).toContain(res.status);
        },
      ),
      { numRuns: 150 },
    );
    await unchanged();
  });

  it('validly signed garbage is never a 5xx and changes nothing', async () => {
    const payload = fc.oneof(
      fc.json({ maxDepth: 4 }),
      fc.string({ maxLength: 200 }),
      fc
        .record({
          type: fc.constantFrom('block_actions', 'view_submission', 'shortcut'),
          actions: fc.anything(),
          user: fc.anything(),
          view: fc.anything(),
        })
        .map((v) => JSON.stringify(v)),
    );
    await fc.assert(
      fc.asyncProperty(payload, fc.boolean(), async (text, asForm) => {
        const body = asForm ? `payload=${encodeURIComponent(text)}` : text;
        const timestamp = String(Math.floor(Date.now() / 1000));
        const res = await fetch(`${gateway.url}/slack/events`, {
          method: 'POST',
          headers: {
            'content-type': asForm ? 'application/x-www-form-urlencoded' : 'application/json',
            'x-slack-request-timestamp': timestamp,
            'x-slack-signature': slackSignature(SIGNING_SECRET, timestamp, body),
          },
          body,
        });
        expect(res.status).toBeLessThan(500);
      }),
      // Payloads no listener handles are answered after 1 s (Bolt's unhandled-request timeout): few runs.
      { numRuns: 12 },
    );
    await unchanged();
  }, 60_000);

  it('validly signed clicks for unknown, expired, decided or malformed approval ids change nothing', async () => {
    const id = fc.oneof(
      fc.constant(ids.rejected),
      fc.constant(ids.expired),
      fc.constant('01JUNKNOWN0000000000000000'),
      fc.string({ maxLength: 80 }),
      fc.constant('__proto__'),
    );
    await fc.assert(
      fc.asyncProperty(
        id,
        fc.constantFrom('countersign_approve', 'countersign_reject'),
        fc.boolean(),
        async (approvalId, action, modal) => {
          const payload = modal
            ? rejectSubmission(approvalId, ALICE, 'fuzz')
            : clickPayload(action as 'countersign_approve', approvalId, ALICE);
          const res = await postInteraction(gateway.url, SIGNING_SECRET, payload);
          expect(res.status).toBe(200);
        },
      ),
      { numRuns: 40 },
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    await unchanged();
  });
});
