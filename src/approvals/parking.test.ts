/**
 * Parking against a real Redis: when a request is held for a person and when it is let go. The approvals
 * stay parked in every case here; only the waiting in this process ends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { approvalMaker, approvalSpec } from '../../test/support/approval-records.js';
import { until } from '../../test/support/approvals.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from '../../test/support/redis.js';
import { silentLogger } from '../log/logger.js';
import { ApprovalEvents } from './events.js';
import { ApprovalJobs } from './jobs.js';
import { Parking } from './parking.js';
import type { ParkingOptions, ParkingRequest } from './parking.js';
import { ApprovalStore } from './store.js';

const approval = approvalMaker({
  label: 'PARKINGTEST',
  tool: 'DeleteCluster',
  spec: approvalSpec({ timeoutSeconds: 600, wait: 'hold', holdForSeconds: 600 }),
  now: Date.now(),
  args: (n) => ({ id: `c${n}` }),
});

describe('Parking: holding requests, and letting them go', () => {
  let redis: Redis;
  let subscriber: Redis;
  let store: ApprovalStore;
  let events: ApprovalEvents;
  let jobs: ApprovalJobs;
  const prefix = uniquePrefix('parking');
  const logger = silentLogger();
  const live = new AbortController();

  beforeAll(async () => {
    redis = await connectTestRedis();
    subscriber = await connectTestRedis();
    store = new ApprovalStore(redis, prefix);
    events = new ApprovalEvents(subscriber, `${prefix}approvals:events`, logger);
    await events.start();
    jobs = new ApprovalJobs({
      redisUrl: testRedisUrl(),
      prefix,
      store,
      slack: undefined,
      logger,
      hooks: { onExpired: async () => undefined },
      now: Date.now,
    });
  });
  afterAll(async () => {
    live.abort();
    await jobs.close();
    await events.close();
    await dropPrefix(redis, prefix);
    redis.disconnect();
    subscriber.disconnect();
  });

  const parking = (options: Partial<ParkingOptions> = {}): Parking =>
    new Parking({
      store,
      events,
      jobs,
      logger,
      processId: 'p1',
      now: Date.now,
      progressIntervalMs: 60_000,
      pollMs: 60_000,
      ...options,
    });

  async function parked(tasked = false): Promise<string> {
    const created = approval({ tasked });
    await store.create(created);
    return created.id;
  }

  const request = (id: string, signal: AbortSignal): ParkingRequest => ({
    id,
    holdMs: 60_000,
    signal,
    sessionSignal: live.signal,
    execute: () => Promise.reject(new Error('nothing is approved here')),
  });

  /** Resolves with the outcome's kind, or 'still holding' after `ms`. */
  const within = async (waiting: Promise<{ kind: string }>, ms: number): Promise<string> =>
    Promise.race([
      waiting.then((o) => o.kind),
      new Promise<string>((resolve) => setTimeout(() => resolve('still holding'), ms)),
    ]);

  it('holds a request while its approval is pending', async () => {
    const p = parking();
    const held = new AbortController();
    const waiting = p.wait(request(await parked(), held.signal));
    expect(await within(waiting, 500)).toBe('still holding');
    held.abort();
    expect(await within(waiting, 500)).toBe('abandoned');
    p.close();
  });

  it('does not hold a request whose client left before it got here', async () => {
    const p = parking();
    const waiting = p.wait(request(await parked(), AbortSignal.abort()));
    expect(await within(waiting, 2000)).toBe('abandoned');
    p.close();
  });

  it('at shutdown: holders are told "pending", and a call that parks afterwards is not held', async () => {
    const p = parking();
    const first = p.wait(request(await parked(), new AbortController().signal));
    expect(await within(first, 300)).toBe('still holding');
    expect(await p.releaseHolders()).toBe(1);
    expect(await within(first, 1000)).toBe('pending');
    const late = p.wait(request(await parked(), new AbortController().signal));
    expect(await within(late, 2000)).toBe('pending');
    p.close();
  });

  it('at shutdown: a call whose approved execution runs in another process is not held either', async () => {
    const p = parking();
    const id = await parked();
    await store.transition(id, 'approve', { id: 'U1', name: 'alice' }, '', Date.now());
    expect(await store.claim(id, 'another-process', Date.now())).toBe(true);
    await p.releaseHolders();
    const late = p.wait(request(id, new AbortController().signal));
    expect(await within(late, 2000)).toBe('pending');
    p.close();
  });

  it('close() lets go of a request still holding, so no hold timer outlives the process', async () => {
    const p = parking();
    const waiting = p.wait(request(await parked(), new AbortController().signal));
    expect(await within(waiting, 300)).toBe('still holding');
    p.close();
    expect(await within(waiting, 1000)).toBe('abandoned');
    expect(p.size).toBe(0);
  });

  it('a decision whose pub/sub message never arrives is found by the poll', async () => {
    // Listens on a channel nobody publishes to: only the poll can notice the decision.
    const deaf = new ApprovalEvents(subscriber, `${prefix}nobody-publishes-here`, logger);
    const p = parking({ events: deaf, processId: 'p2', pollMs: 200 });
    const id = await parked();
    const waiting = p.wait(request(id, new AbortController().signal));
    expect(await within(waiting, 300)).toBe('still holding');
    await store.transition(id, 'reject', { id: 'U1', name: 'alice' }, 'no', Date.now());
    expect(await within(waiting, 2000)).toBe('refused');
    p.close();
  });

  describe('an approved call runs once, and its result goes to the request waiting for it', () => {
    const ran =
      (id: string): ParkingRequest['execute'] =>
      async () => ({
        outcome: 'ok',
        result: { content: [{ type: 'text', text: `ran ${id}` }] },
      });

    /** A request holds for a new approval, which is then approved: what the request got. */
    async function approvedWhileHeld(p: Parking, tasked: boolean): Promise<{ id: string; outcome: unknown }> {
      const id = await parked(tasked);
      const waiting = p.wait({ ...request(id, new AbortController().signal), execute: ran(id) });
      expect(await within(waiting, 300)).toBe('still holding');
      await store.transition(id, 'approve', { id: 'U1', name: 'alice' }, '', Date.now());
      return { id, outcome: await waiting };
    }

    it('a waiting request gets the result, and it is not kept for a retry as well (single use)', async () => {
      const p = parking();
      const { id, outcome } = await approvedWhileHeld(p, false);
      expect(outcome).toEqual({ kind: 'result', result: { content: [{ type: 'text', text: `ran ${id}` }] } });
      const record = await store.get(id);
      expect(record).toMatchObject({ execution: 'done', outcome: 'ok', delivered: true });
      expect(record ? await store.take(record) : 'no record').toBeUndefined();
      p.close();
    });

    it("a tasked approval: the result is the task's alone; a request waiting as well is told it was used", async () => {
      const p = parking();
      const { id, outcome } = await approvedWhileHeld(p, true);
      expect(outcome).toMatchObject({ kind: 'consumed' });
      expect(await redis.hget(`${prefix}approval:${id}`, 'taskResult')).toContain(`ran ${id}`);
      // Not kept for a retry either: single use.
      expect(await redis.hget(`${prefix}approval:${id}`, 'result')).toBeNull();
      p.close();
    });

    it('several requests holding for one approval: one gets the result, the others are told it was used', async () => {
      const p = parking();
      const id = await parked();
      const waiting = [1, 2, 3].map(() =>
        p.wait({ ...request(id, new AbortController().signal), execute: ran(id) }),
      );
      await store.transition(id, 'approve', { id: 'U1', name: 'alice' }, '', Date.now());
      const outcomes = await Promise.all(waiting);
      expect(outcomes.filter((o) => o.kind === 'result')).toHaveLength(1);
      expect(outcomes.filter((o) => o.kind === 'consumed')).toHaveLength(2);
      p.close();
    });

    it('a client that left while its call ran leaves the result kept for its retry', async () => {
      const p = parking();
      const id = await parked();
      const client = new AbortController();
      const waiting = p.wait({
        ...request(id, client.signal),
        execute: async (record) => {
          client.abort(); // the client goes away while the approved call runs upstream
          return ran(id)(record);
        },
      });
      await store.transition(id, 'approve', { id: 'U1', name: 'alice' }, '', Date.now());
      expect((await waiting).kind).toBe('abandoned');
      const record = await until(async () => {
        const r = await store.get(id);
        return r?.execution === 'done' ? r : undefined;
      }, 5000);
      expect(JSON.parse((await store.take(record)) ?? 'null')).toEqual({
        content: [{ type: 'text', text: `ran ${id}` }],
      });
      p.close();
    });
  });
});
