import { describe, expect, it } from 'vitest';
import type { ApprovalRecord } from '../approvals/record.js';
import { argumentsForReviewers, decidedMessage, pendingMessage } from './blocks.js';

const record: ApprovalRecord = {
  id: '01JAPPROVAL0000000000000000',
  status: 'pending',
  server: 'aws',
  tool: 'CloneContainerToECR',
  grant: 'deploy-bot',
  owner: 'olga@example.com',
  session: 's',
  callId: '01JCALL00000000000000000000',
  argsSha256: 'a'.repeat(64),
  args: { repositoryName: 'prod-app', auth: { token: 'hunter2' }, note: '<@U999> ```x```' },
  rule: 'p.json#/tools/CloneContainerToECR/action',
  message: 'needs approval',
  channel: 'C1',
  reviewers: ['UALICE', 'SPLATFORM', 'ops'],
  quorum: 1,
  allowSelfApproval: false,
  wait: 'auto',
  secretArgs: [['auth', 'token']],
  timeoutSeconds: 900,
  createdAt: Date.UTC(2026, 10, 23, 12),
  expiresAt: Date.UTC(2026, 10, 23, 12, 15),
  votes: 0,
  execution: 'none',
  delivered: false,
  tasked: false,
};

describe('approval message blocks', () => {
  it('redacts secret paths and cuts long values', () => {
    const shown = argumentsForReviewers({ auth: { token: 'x' }, long: 'y'.repeat(500) }, [
      ['auth', 'token'],
    ]) as Record<string, unknown>;
    expect(shown.auth).toEqual({ token: '[secret]' });
    expect(String(shown.long)).toMatch(/^y{200}… \(500 chars\)$/);
  });

  it('the pending message names the call and carries Approve/Reject buttons with the approval id', () => {
    const { text, blocks } = pendingMessage(record);
    expect(text).toBe('Approval needed: CloneContainerToECR on aws by deploy-bot (owner olga@example.com)');
    const json = JSON.stringify(blocks);
    expect(json).not.toContain('hunter2');
    expect(json).toContain('<@UALICE>, <!subteam^SPLATFORM>, ops');
    // Text from the agent cannot mention people or close the code block.
    expect(json).not.toContain('<@U999>');
    expect(json).toContain('&lt;@U999&gt;');
    const actions = blocks.find((b) => b.type === 'actions') as {
      elements: { action_id: string; value: string }[];
    };
    expect(actions.elements.map((e) => [e.action_id, e.value])).toEqual([
      ['countersign_approve', record.id],
      ['countersign_reject', record.id],
    ]);
  });

  it('the decided message has the outcome and no buttons', () => {
    const rejected = decidedMessage({
      ...record,
      status: 'rejected',
      decidedBy: 'UBOB',
      decidedByName: 'bob',
      decidedAt: record.createdAt + 1000,
      decisionReason: 'freeze',
    });
    expect(rejected.blocks.some((b) => b.type === 'actions')).toBe(false);
    expect(JSON.stringify(rejected.blocks)).toContain('*Rejected* by <@UBOB>');
    const expired = decidedMessage({ ...record, status: 'expired' });
    expect(JSON.stringify(expired.blocks)).toContain('*Expired*: no decision within 15m; not executed');
  });
});
