import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { connectTestRedis, dropPrefix, uniquePrefix } from '../../test/support/redis.js';
import { TaskStore } from './store.js';
import type { NewTask } from './store.js';

const task = (extra: Partial<NewTask> = {}): NewTask => ({
  kind: 'settled',
  grant: 'bot',
  session: 's1',
  createdAt: Date.now(),
  ttl: 60_000,
  pollInterval: 1000,
  status: 'completed',
  result: '{"content":[]}',
  ...extra,
});

describe('TaskStore (real Redis)', () => {
  let redis: Redis;
  let store: TaskStore;
  const prefix = uniquePrefix('tasks');
  beforeAll(async () => {
    redis = await connectTestRedis();
    store = new TaskStore(redis, prefix);
  });
  afterAll(async () => {
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  it('gives random ids, binds a task to its grant, and expires it with its ttl', async () => {
    const a = await store.create(task());
    const b = await store.create(task());
    expect(a.id).not.toBe(b.id);
    expect(a.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await store.get(a.id, 'bot')).toMatchObject({ id: a.id, status: 'completed', ttl: 60_000 });
    expect(await store.get(a.id, 'other-bot')).toBeUndefined();
    const ttl = await redis.pttl(`${prefix}task:${a.id}`);
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('a task past its ttl is gone, also from the grant list; an update does not bring it back', async () => {
    const short = await store.create(task({ ttl: 200 }));
    await new Promise((r) => setTimeout(r, 400));
    expect(await store.get(short.id, 'bot')).toBeUndefined();
    await store.update(short.id, { cancelledAt: Date.now() }, Date.now());
    expect(await redis.exists(`${prefix}task:${short.id}`)).toBe(0);
    const { tasks } = await store.list('bot', undefined, 50);
    expect(tasks.map((t) => t.id)).not.toContain(short.id);
    expect(await redis.zscore(`${prefix}tasks:grant:bot`, short.id)).toBeNull();
  });

  it('lists a grant’s tasks newest first, page by page, without skipping any when tasks expire or are added', async () => {
    const ids: string[] = [];
    const at = Date.now();
    // Two share a creation time: the order is then by id, and the cursor still separates them.
    for (let i = 0; i < 5; i++)
      ids.push((await store.create(task({ grant: 'lister', createdAt: at + Math.min(i, 3) }))).id);
    const order = await store.list('lister', undefined, 100);
    expect(order.tasks).toHaveLength(5);
    expect(order.next).toBeUndefined();
    const expected = order.tasks.map((t) => t.id);
    const first = await store.list('lister', undefined, 2);
    expect(first.tasks.map((t) => t.id)).toEqual(expected.slice(0, 2));
    // A new task and an expired one between pages change nothing for the pages to come.
    await store.create(task({ grant: 'lister', createdAt: at + 100 }));
    await redis.del(`${prefix}task:${expected[0] ?? ''}`);
    const second = await store.list('lister', first.next, 2);
    expect(second.tasks.map((t) => t.id)).toEqual(expected.slice(2, 4));
    const third = await store.list('lister', second.next, 2);
    expect(third.tasks.map((t) => t.id)).toEqual(expected.slice(4));
    expect(third.next).toBeUndefined();
    expect(new Set(ids)).toEqual(new Set(expected));
  });
});
