import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { approvalMaker, approvalSpec } from '../../test/support/approval-records.js';
import { connectTestRedis, dropPrefix, uniquePrefix } from '../../test/support/redis.js';
import { silentLogger } from '../log/logger.js';
import type { ApprovalRecord } from './record.js';
import { ExecutionRecovery } from './recovery.js';
import { ApprovalStore } from './store.js';
import type { NewApproval } from './store.js';

const T0 = Date.now();
const approval = approvalMaker({
  label: 'RECOVERY',
  tool: 'sleep',
  spec: approvalSpec(),
  now: T0,
  args: (n) => ({ n }),
});
const alice = { id: 'U1', name: 'alice' };

describe('ExecutionRecovery (sweep on a real Redis)', () => {
  let redis: Redis;
  let store: ApprovalStore;
  const prefix = uniquePrefix('recovery');
  const interrupted: ApprovalRecord[] = [];
  const queued: string[] = [];
  const expired: string[] = [];
  let recovery: ExecutionRecovery;

  beforeAll(async () => {
    redis = await connectTestRedis();
    store = new ApprovalStore(redis, prefix);
    recovery = new ExecutionRecovery({
      store,
      processId: 'me',
      livenessMs: 60_000,
      logger: silentLogger(),
      now: Date.now,
      hooks: {
        interruptedResult: (r) =>
          JSON.stringify({ content: [{ type: 'text', text: `interrupted ${r.id}` }] }),
        interrupted: async (r) => {
          interrupted.push(r);
        },
        runAwaiting: async (id) => {
          queued.push(id);
        },
        expireOverdue: async (id) => {
          expired.push(id);
          await store.transition(id, 'expire', { id: '', name: '' }, '', Date.now());
        },
      },
    });
  });
  afterAll(async () => {
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  async function approved(extra: Partial<NewApproval> = {}): Promise<string> {
    const a = approval(extra);
    await store.create(a);
    await store.transition(a.id, 'approve', alice, '', Date.now());
    return a.id;
  }

  it('marks an execution interrupted only when its claimant process is gone, and never twice', async () => {
    const orphan = await approved({ tasked: true });
    const alive = await approved();
    expect(await store.claim(orphan, 'dead-process', Date.now())).toBe(true);
    expect(await store.claim(alive, 'live-process', Date.now())).toBe(true);
    await store.heartbeat('live-process', 60_000);

    await recovery.sweep();
    expect(interrupted.map((r) => r.id)).toEqual([orphan]);
    const record = await store.get(orphan);
    expect(record).toMatchObject({ execution: 'interrupted', outcome: 'interrupted' });
    // Kept for the task that waits for it (repeatable for that task); a retry cannot take it as well.
    expect(record?.taskResult).toContain(`interrupted ${orphan}`);
    expect(await store.take(record as ApprovalRecord)).toBeUndefined();
    // Fenced: if the "dead" claimant was only cut off and finishes after all, nothing changes.
    expect(
      await store.finish(record as ApprovalRecord, 'dead-process', 'done', 'ok', Date.now(), '{}', false),
    ).toBe(false);
    expect(await store.get(orphan)).toMatchObject({ execution: 'interrupted' });
    expect(await store.get(alive)).toMatchObject({ execution: 'running', executor: 'live-process' });
    // Never claimed again, and a second sweep does nothing more.
    expect(await store.claim(orphan, 'me', Date.now())).toBe(false);
    await recovery.sweep();
    expect(interrupted).toHaveLength(1);
    expect(await store.running()).toEqual([alive]);
  });

  it('queues again an approved task call nobody claimed, and forgets it once claimed', async () => {
    const id = await approved({ tasked: true });
    const plain = await approved();
    // Fresh approvals are left to the job queued at decision time; older ones are swept.
    await recovery.sweep();
    expect(queued).not.toContain(id);
    await redis.zadd(`${prefix}approvals:awaiting-execution`, Date.now() - 10_000, id);
    await recovery.sweep();
    expect(queued).toContain(id);
    expect(queued).not.toContain(plain); // a plain call is run by its session or the agent's retry
    expect(await store.claim(id, 'me', Date.now())).toBe(true);
    expect(await store.awaitingExecution(Date.now())).not.toContain(id);
  });

  it('expires pending approvals whose time passed while no process was running', async () => {
    const overdue = approval({ now: Date.now() - 120_000 });
    const current = approval();
    await store.create(overdue);
    await store.create(current);
    await recovery.expireDue();
    expect(expired).toContain(overdue.id);
    expect(expired).not.toContain(current.id);
    expect(await store.get(overdue.id)).toMatchObject({ status: 'expired' });
    expect(await store.get(current.id)).toMatchObject({ status: 'pending' });
  });
});
