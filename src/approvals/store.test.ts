import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { approvalMaker, approvalSpec } from '../../test/support/approval-records.js';
import { connectTestRedis, dropPrefix, uniquePrefix } from '../../test/support/redis.js';
import type { ApprovalSpec } from '../policy/types.js';
import { ApprovalStore } from './store.js';

const spec = (extra: Partial<ApprovalSpec> = {}): ApprovalSpec =>
  approvalSpec({ reviewers: ['U1', 'U2', 'U3'], maxPending: 3, ...extra });
const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
const approval = approvalMaker({
  label: 'TESTAPPROVAL',
  tool: 'CloneContainerToECR',
  spec: spec(),
  now: T0,
  args: (n) => ({ repositoryName: `r${n}` }),
});
const alice = { id: 'U1', name: 'alice' };
const bob = { id: 'U2', name: 'bob' };

describe('ApprovalStore (Lua state machine on a real Redis)', () => {
  let redis: Redis;
  let store: ApprovalStore;
  const prefix = uniquePrefix('approvals');
  beforeAll(async () => {
    redis = await connectTestRedis();
    store = new ApprovalStore(redis, prefix);
  });
  afterAll(async () => {
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  it('binds an approval to the exact call: the identical call finds it, other arguments do not', async () => {
    const a = approval();
    expect(await store.create(a)).toEqual({ kind: 'created', id: a.id });
    expect(await store.create({ ...a, id: '01JTESTOTHERID0000000000000' })).toEqual({
      kind: 'existing',
      id: a.id,
    });
    expect((await store.findBound(a))?.id).toBe(a.id);
    expect(await store.findBound({ ...a, argsSha256: 'f'.repeat(64) })).toBeUndefined();
    expect(await store.findBound({ ...a, grant: 'another-bot' })).toBeUndefined();
    const record = await store.get(a.id);
    expect(record).toMatchObject({
      status: 'pending',
      execution: 'none',
      expiresAt: T0 + 60_000,
      args: { repositoryName: a.args.repositoryName },
    });
  });

  it('refuses a new approval past max_pending for the grant', async () => {
    const grant = 'busy-bot';
    for (let i = 0; i < 3; i++) expect((await store.create(approval({ grant }))).kind).toBe('created');
    expect(await store.create(approval({ grant }))).toEqual({ kind: 'too_many_pending', pending: 3 });
    expect((await store.create(approval({ grant: 'calm-bot' }))).kind).toBe('created');
  });

  it('one transition decides; everyone after is told who decided and when', async () => {
    const a = approval({ grant: 'g-decide' });
    await store.create(a);
    const results = await Promise.all([
      store.transition(a.id, 'approve', alice, '', T0 + 1000),
      store.transition(a.id, 'reject', bob, 'no', T0 + 1001),
      store.transition(a.id, 'approve', bob, '', T0 + 1002),
    ]);
    const winners = results.filter((r) => r.kind === 'decided');
    expect(winners).toHaveLength(1);
    const losers = results.filter((r) => r.kind === 'already_decided');
    expect(losers).toHaveLength(2);
    const record = await store.get(a.id);
    for (const loser of losers)
      expect(loser).toMatchObject({ status: record?.status, by: record?.decidedBy, at: record?.decidedAt });
  });

  it('notPending: tells which of many approvals are no longer pending (decided, missing, or not an id)', async () => {
    const pending = Array.from({ length: 1500 }, () => approval({ grant: 'g-poll' }));
    for (const a of pending) await store.create({ ...a, spec: spec({ maxPending: 10_000 }) });
    const [first, second] = pending;
    if (!first || !second) throw new Error('no approvals');
    await store.transition(first.id, 'approve', alice, '', T0 + 1000);
    await store.transition(second.id, 'reject', bob, 'no', T0 + 1000);
    const missing = '01JNOSUCHAPPROVAL000000000';
    const ids = [...pending.map((a) => a.id), missing, 'not an id'];
    // More ids than one round trip takes: the answer spans batches, in order.
    expect(await store.notPending(ids)).toEqual([first.id, second.id, 'not an id', missing]);
    expect(await store.notPending([])).toEqual([]);
  });

  it('a click after the expiry time expires the approval instead of deciding it', async () => {
    const a = approval({ grant: 'g-expire' });
    await store.create(a);
    expect(await store.transition(a.id, 'expire', { id: '', name: '' }, '', T0 + 59_999)).toEqual({
      kind: 'not_due',
    });
    // The late click expired it (its effects are owed by the caller); the next one finds it decided.
    expect(await store.transition(a.id, 'approve', alice, '', T0 + 60_000)).toEqual({ kind: 'expired_now' });
    expect(await store.transition(a.id, 'approve', alice, '', T0 + 60_001)).toMatchObject({
      kind: 'already_decided',
      status: 'expired',
    });
    expect((await store.get(a.id))?.status).toBe('expired');
    expect(await store.claim(a.id, 'p1', T0 + 60_001)).toBe(false);
  });

  it('quorum: distinct approvers count once; the vote that reaches it approves', async () => {
    const a = approval({ grant: 'g-quorum', spec: spec({ quorum: 2 }) });
    await store.create(a);
    expect(await store.transition(a.id, 'approve', alice, '', T0 + 1)).toEqual({
      kind: 'vote_counted',
      votes: 1,
    });
    expect(await store.transition(a.id, 'approve', alice, '', T0 + 2)).toEqual({
      kind: 'already_voted',
      votes: 1,
    });
    expect(await store.transition(a.id, 'approve', bob, '', T0 + 3)).toEqual({
      kind: 'decided',
      status: 'approved',
    });
    expect(await store.get(a.id)).toMatchObject({ status: 'approved', votes: 2, decidedBy: 'U2' });
  });

  it('an approved call is claimed for execution exactly once, whoever asks', async () => {
    const a = approval({ grant: 'g-claim' });
    await store.create(a);
    await store.transition(a.id, 'approve', alice, '', T0 + 1);
    const claims = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.claim(a.id, `p${i}`, T0 + 2)),
    );
    expect(claims.filter(Boolean)).toHaveLength(1);
    expect((await store.get(a.id))?.execution).toBe('running');
  });

  it('only the claimant can give a claim back, and only before the call finished', async () => {
    const a = approval({ grant: 'g-unclaim' });
    await store.create(a);
    await store.transition(a.id, 'approve', alice, '', T0 + 1);
    expect(await store.claim(a.id, 'p1', T0 + 2)).toBe(true);
    expect(await store.unclaim(a.id, 'p2', T0 + 5)).toBe(false);
    expect(await store.unclaim(a.id, 'p1', T0 + 5)).toBe(true);
    expect((await store.get(a.id))?.execution).toBe('none');
    expect(await store.claim(a.id, 'p2', T0 + 3)).toBe(true);
    const record = await store.get(a.id);
    if (!record) throw new Error('record missing');
    expect(await store.finish(record, 'p1', 'done', 'ok', T0 + 4, undefined, true)).toBe(false); // not the claimant
    expect(await store.finish(record, 'p2', 'done', 'ok', T0 + 4, undefined, true)).toBe(true);
    expect(await store.unclaim(a.id, 'p2', T0 + 5)).toBe(false);
    expect(await store.finish(record, 'p2', 'done', 'ok', T0 + 6, undefined, true)).toBe(false); // once
  });

  it('a kept result is taken once, then the binding is gone', async () => {
    const a = approval({ grant: 'g-take' });
    await store.create(a);
    await store.transition(a.id, 'approve', alice, '', T0 + 1);
    await store.claim(a.id, 'p1', T0 + 2);
    const record = await store.get(a.id);
    if (!record) throw new Error('record missing');
    await store.finish(record, 'p1', 'done', 'ok', T0 + 3, '{"content":[]}', false);
    expect(await store.take(record)).toBe('{"content":[]}');
    expect(await store.take(record)).toBeUndefined();
    expect(await store.findBound(a)).toBeUndefined();
  });

  it('with a used-answer window, the binding outlives the hand-over for that long, and nothing is handed twice', async () => {
    const windowed = new ApprovalStore(redis, prefix, 30);
    const a = approval({ grant: 'g-take-window' });
    await windowed.create(a);
    await windowed.transition(a.id, 'approve', alice, '', T0 + 1);
    await windowed.claim(a.id, 'p1', T0 + 2);
    const record = await windowed.get(a.id);
    if (!record) throw new Error('record missing');
    await windowed.finish(record, 'p1', 'done', 'ok', T0 + 3, '{"content":[]}', false);
    expect(await windowed.take(record)).toBe('{"content":[]}');
    // Identical retries still find the used approval (and are told so), for the window only.
    expect((await windowed.findBound(a))?.delivered).toBe(true);
    const ttl = await redis.ttl(windowed.binding(a));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(30);
    expect(await windowed.take(record)).toBeUndefined();
  });

  it('a result is never taken by a retry when a task waits for the approval, nor when none was kept', async () => {
    const a = approval({ grant: 'g-take-tasked' });
    await store.create({ ...a, tasked: true });
    await store.transition(a.id, 'approve', alice, '', T0 + 1);
    await store.claim(a.id, 'p1', T0 + 2);
    const record = await store.get(a.id);
    if (!record) throw new Error('record missing');
    await store.finish(record, 'p1', 'done', 'ok', T0 + 3, '{"content":[]}', false);
    expect(await store.take(record)).toBeUndefined();
    expect((await store.get(a.id))?.taskResult).toBe('{"content":[]}');
    // The first task to claim the result owns it; a second task is told which one did.
    expect(await store.ownResult(a.id, 'task-1')).toBe('task-1');
    expect(await store.ownResult(a.id, 'task-2')).toBe('task-1');
    expect(await store.ownResult('01JTESTNOSUCHAPPROVAL000000', 'task-3')).toBeUndefined();
  });

  it('status(): the one field waiters poll, pending until a decision, undefined for no record', async () => {
    const a = approval({ grant: 'g-status' });
    await store.create(a);
    expect(await store.status(a.id)).toBe('pending');
    await store.transition(a.id, 'reject', bob, 'no', T0 + 1000);
    expect(await store.status(a.id)).toBe('rejected');
    expect(await store.status('01JTESTNOSUCHAPPROVAL000000')).toBeUndefined();
    expect(await store.status('../../etc')).toBeUndefined();
  });

  it('unknown and malformed ids are unknown, never an error', async () => {
    expect(await store.get('nope')).toBeUndefined();
    expect(await store.get('../../etc')).toBeUndefined();
    expect(await store.transition('01JTESTNOSUCHAPPROVAL000000', 'approve', alice, '', T0)).toEqual({
      kind: 'unknown',
    });
  });
  it('keeps the call’s long parts beside a compact hash, and still reads records written the older way', async () => {
    const a = approval({ grant: 'g-layout', message: 'm'.repeat(200) });
    await store.create(a);
    expect(await redis.object('ENCODING', `${prefix}approval:${a.id}`)).toBe('listpack');
    expect(await store.get(a.id)).toMatchObject({
      args: a.args,
      message: a.message,
      reviewers: ['U1', 'U2', 'U3'],
    });
    // A record from before the split: every field in the hash, no call key.
    const legacy = '01JTESTLEGACY0000000000000';
    const hash = await redis.hgetall(`${prefix}approval:${a.id}`);
    await redis.hset(`${prefix}approval:${legacy}`, {
      ...hash,
      id: legacy,
      args: JSON.stringify({ old: true }),
      rule: 'p.json#/tools/t/action',
      message: 'older record',
      reviewers: JSON.stringify(['U9']),
      secretArgs: '[]',
    });
    expect(await store.get(legacy)).toMatchObject({ id: legacy, args: { old: true }, reviewers: ['U9'] });
  });
  it('keeps arguments exactly as approved, __proto__ keys included', async () => {
    const args = JSON.parse(
      '{"__proto__": {"admin": true}, "constructor": {"prototype": 1}, "a": 2}',
    ) as Record<string, unknown>;
    const a = approval({ grant: 'g-proto', args });
    await store.create(a);
    const record = await store.get(a.id);
    expect(Object.keys(record?.args ?? {})).toEqual(['__proto__', 'constructor', 'a']);
    expect(JSON.stringify(record?.args)).toBe(JSON.stringify(args));
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });
});
