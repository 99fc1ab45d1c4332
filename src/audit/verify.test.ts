import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { ulid } from 'ulid';
import { connectTestRedis, dropPrefix, uniquePrefix } from '../../test/support/redis.js';
import { hashArguments } from './args.js';
import { canonicalEvent, linkHash } from './chain.js';
import type { AuditEvent } from './event.js';
import { AuditLog } from './log.js';

function sampleEvent(i: number): AuditEvent {
  return {
    id: ulid(),
    time: new Date().toISOString(),
    type: 'decision',
    callId: ulid(),
    grant: 'g1',
    owner: 'alice',
    session: null,
    server: 'srv',
    tool: `tool${i}`,
    argsSha256: hashArguments({ i }),
    decision: 'deny',
    reason: 'default_deny',
    rule: null,
    message: null,
    counters: [],
  };
}

interface Entry {
  id: string;
  fields: Record<string, string>;
}

describe('AuditLog.verify', () => {
  let redis: Redis;
  const root = uniquePrefix('audit-verify');
  let prefix: string;
  let stream: string;
  let log: AuditLog;
  let ids: string[];

  async function entries(): Promise<Entry[]> {
    const raw = await redis.xrange(stream, '-', '+');
    return raw.map(([id, flat]) => ({
      id,
      fields: { e: flat[1] ?? '', h: flat[3] ?? '', p: flat[5] ?? '' },
    }));
  }

  /** What an attacker with Redis access can do: rebuild the stream with chosen ids and contents, then RENAME it. */
  async function rewrite(change: (list: Entry[]) => Entry[]): Promise<void> {
    const forged = `${stream}:forged`;
    for (const { id, fields } of change(await entries())) {
      await redis.xadd(forged, id, 'e', fields.e ?? '', 'h', fields.h ?? '', 'p', fields.p ?? '');
    }
    await redis.rename(forged, stream);
  }

  const editTool = (entry: Entry, tool: string): string =>
    canonicalEvent({ ...(JSON.parse(entry.fields.e ?? '') as AuditEvent), tool });

  beforeAll(async () => {
    redis = await connectTestRedis('audit-verify');
  });
  beforeEach(async () => {
    prefix = `${root}${ulid()}:`;
    stream = `${prefix}audit`;
    log = new AuditLog({ redis, prefix, pageSize: 3 });
    for (let i = 0; i < 10; i++) await log.append(sampleEvent(i));
    ids = (await entries()).map((entry) => entry.id);
  });
  afterAll(async () => {
    await dropPrefix(redis, root);
    redis.disconnect();
  });

  it('accepts an intact trail and returns its head', async () => {
    expect(await log.verify()).toEqual({ ok: true, count: 10, head: await redis.get(`${prefix}audit:head`) });
    expect(await new AuditLog({ redis, prefix: `${prefix}empty:` }).verify()).toEqual({
      ok: true,
      count: 0,
      head: '0'.repeat(64),
    });
  });

  it('catches an edited event, by index and stream id', async () => {
    await rewrite((list) =>
      list.map((entry, i) =>
        i === 4 ? { ...entry, fields: { ...entry.fields, e: editTool(entry, 'forged') } } : entry,
      ),
    );
    expect(await log.verify()).toEqual({
      ok: false,
      count: 4,
      firstBad: { streamId: ids[4], index: 4, problem: expect.stringContaining('edited') },
    });
  });

  it('catches an edited event that is not canonical JSON', async () => {
    await rewrite((list) =>
      list.map((entry, i) =>
        i === 2
          ? {
              ...entry,
              fields: { ...entry.fields, e: JSON.stringify(JSON.parse(entry.fields.e ?? ''), null, 1) },
            }
          : entry,
      ),
    );
    expect(await log.verify()).toMatchObject({
      ok: false,
      firstBad: { index: 2, problem: expect.stringContaining('canonical') },
    });
  });

  it('catches an edited event whose hash was recomputed, at the entry after it', async () => {
    await rewrite((list) =>
      list.map((entry, i) => {
        if (i !== 4) return entry;
        const e = editTool(entry, 'forged');
        return { ...entry, fields: { ...entry.fields, e, h: linkHash(entry.fields.p ?? '', e) } };
      }),
    );
    expect(await log.verify()).toMatchObject({
      ok: false,
      count: 5,
      firstBad: { streamId: ids[5], index: 5 },
    });
  });

  it('catches an event deleted and re-added, modified, at a later id', async () => {
    const [entry] = (await entries()).slice(4, 5);
    await redis.xdel(stream, ids[4] as string);
    const e = editTool(entry as Entry, 'forged');
    await redis.xadd(
      stream,
      `${Date.now() + 60_000}-0`,
      'e',
      e,
      'h',
      linkHash(entry?.fields.h ?? '', e),
      'p',
      entry?.fields.h ?? '',
    );
    expect(await log.verify()).toMatchObject({
      ok: false,
      count: 4,
      firstBad: { streamId: ids[5], index: 4 },
    });
  });

  it('catches a removed event', async () => {
    await redis.xdel(stream, ids[3] as string);
    expect(await log.verify()).toEqual({
      ok: false,
      count: 3,
      firstBad: { streamId: ids[4], index: 3, problem: expect.stringContaining('removed') },
    });
  });

  it('catches a removed first event', async () => {
    await redis.xdel(stream, ids[0] as string);
    expect(await log.verify()).toMatchObject({
      ok: false,
      count: 0,
      firstBad: { streamId: ids[1], index: 0, problem: expect.stringContaining('genesis') },
    });
  });

  it('catches a reordered pair', async () => {
    await rewrite((list) => {
      const [six, seven] = [list[6] as Entry, list[7] as Entry];
      return list.map((entry, i) =>
        i === 6 ? { ...entry, fields: seven.fields } : i === 7 ? { ...entry, fields: six.fields } : entry,
      );
    });
    expect(await log.verify()).toMatchObject({
      ok: false,
      count: 6,
      firstBad: { streamId: ids[6], index: 6 },
    });
  });

  it('catches a truncated tail', async () => {
    await redis.xdel(stream, ids[8] as string, ids[9] as string);
    expect(await log.verify()).toEqual({
      ok: false,
      count: 8,
      firstBad: { streamId: ids[7], index: 8, problem: expect.stringContaining('removed') },
    });
  });

  it('catches a changed head, a deleted head and a deleted stream', async () => {
    await redis.set(`${prefix}audit:head`, 'f'.repeat(64));
    expect(await log.verify()).toMatchObject({
      ok: false,
      count: 10,
      firstBad: { index: 10, problem: expect.stringContaining('head') },
    });
    await redis.del(`${prefix}audit:head`);
    expect(await log.verify()).toMatchObject({
      ok: false,
      firstBad: { problem: expect.stringContaining('missing') },
    });
    await redis.set(`${prefix}audit:head`, 'f'.repeat(64));
    await redis.del(stream);
    expect(await log.verify()).toMatchObject({
      ok: false,
      count: 0,
      firstBad: { index: 0, problem: expect.stringContaining('empty') },
    });
  });

  it('catches a correctly hashed entry that is not an audit event', async () => {
    let forgedHead = '';
    await rewrite((list) =>
      list.map((entry, i) => {
        if (i !== 9) return entry;
        const e = '{"hello":"world"}';
        forgedHead = linkHash(entry.fields.p ?? '', e);
        return { ...entry, fields: { ...entry.fields, e, h: forgedHead } };
      }),
    );
    await redis.set(`${prefix}audit:head`, forgedHead);
    expect(await log.verify()).toMatchObject({
      ok: false,
      count: 9,
      firstBad: { index: 9, problem: expect.stringContaining('not a valid audit event') },
    });
  });

  it('follows appends made while verifying', async () => {
    const writer = new AuditLog({ redis, prefix });
    const appends = Promise.all(Array.from({ length: 60 }, (_, i) => writer.append(sampleEvent(100 + i))));
    const result = await log.verify();
    await appends;
    expect(result.ok).toBe(true);
    expect(await log.verify()).toMatchObject({ ok: true, count: 70 });
  });
});
