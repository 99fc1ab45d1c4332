import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Redis } from 'ioredis';
import { ulid } from 'ulid';
import { connectTestRedis, dropPrefix, uniquePrefix } from '../../test/support/redis.js';
import { createRedis } from '../redis/client.js';
import { hashArguments } from './args.js';
import type { AuditEvent } from './event.js';
import { AuditLog } from './log.js';

function sampleEvent(over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    id: ulid(),
    time: new Date().toISOString(),
    type: 'decision',
    callId: ulid(),
    grant: 'g1',
    owner: 'alice',
    session: 's1',
    server: 'srv',
    tool: 'echo',
    argsSha256: hashArguments({}),
    argsRedacted: {},
    decision: 'allow',
    reason: 'allowed',
    rule: null,
    message: null,
    counters: [],
    ...over,
  };
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('AuditLog', () => {
  let redis: Redis;
  let other: Redis;
  const prefix = uniquePrefix('audit-log');
  beforeAll(async () => {
    redis = await connectTestRedis('audit-a');
    other = await connectTestRedis('audit-b');
  });
  afterAll(async () => {
    await dropPrefix(redis, prefix);
    redis.disconnect();
    other.disconnect();
  });

  it('keeps one verifiable chain under 100 concurrent appends from two processes', async () => {
    const p = `${prefix}two:`;
    const a = new AuditLog({ redis, prefix: p });
    const b = new AuditLog({ redis: other, prefix: p });
    const written = Array.from({ length: 100 }, (_, i) => sampleEvent({ grant: i % 2 === 0 ? 'a' : 'b' }));
    await Promise.all(written.map((event, i) => (i % 2 === 0 ? a : b).append(event)));

    expect(await new AuditLog({ redis, prefix: p, pageSize: 7 }).verify()).toMatchObject({
      ok: true,
      count: 100,
    });
    const stored = await a.query({ limit: 1000 });
    expect(stored.map((e) => e.id).sort()).toEqual(written.map((e) => e.id).sort());
    // Each process's events keep their call order.
    for (const grant of ['a', 'b']) {
      expect(stored.filter((e) => e.grant === grant).map((e) => e.id)).toEqual(
        written.filter((e) => e.grant === grant).map((e) => e.id),
      );
    }
  });

  it('rehashes and retries when another process moved the head', async () => {
    const p = `${prefix}stale:`;
    await new AuditLog({ redis, prefix: p }).append(sampleEvent());
    const late = new AuditLog({ redis: other, prefix: p }); // still believes the trail is empty
    const scriptCalls = vi.spyOn(other, 'evalsha');
    await late.append(sampleEvent());
    expect(scriptCalls).toHaveBeenCalledTimes(2);
    scriptCalls.mockRestore();
    expect(await late.verify()).toMatchObject({ ok: true, count: 2 });
  });

  it('writes appends made during a write in the next single round trip, in call order', async () => {
    const p = `${prefix}batch:`;
    const log = new AuditLog({ redis, prefix: p });
    const scriptCalls = vi.spyOn(redis, 'evalsha');
    const events = Array.from({ length: 50 }, () => sampleEvent());
    const first = log.append(events[0] as AuditEvent);
    await new Promise((resolve) => setImmediate(resolve)); // the first write is on the wire
    expect(scriptCalls).toHaveBeenCalledTimes(1);
    await Promise.all([first, ...events.slice(1).map((event) => log.append(event))]);
    expect(scriptCalls).toHaveBeenCalledTimes(2);
    scriptCalls.mockRestore();
    expect((await log.query({ limit: 100 })).map((e) => e.id)).toEqual(events.map((e) => e.id));
  });

  it('rejects with countersign.audit.unavailable when Redis cannot be reached', async () => {
    const down = createRedis(`redis://127.0.0.1:${await closedPort()}`, 'audit-down');
    down.on('error', () => undefined);
    try {
      const log = new AuditLog({ redis: down, prefix: `${prefix}down:` });
      await expect(log.append(sampleEvent())).rejects.toMatchObject({
        code: 'countersign.audit.unavailable',
      });
      await expect(log.query({})).rejects.toMatchObject({ code: 'countersign.audit.unavailable' });
      await expect(log.verify()).rejects.toMatchObject({ code: 'countersign.audit.unavailable' });
    } finally {
      down.disconnect();
    }
  });

  it('filters queries by since, grant, tool, decision and type, newest last, page by page', async () => {
    const log = new AuditLog({ redis, prefix: `${prefix}query:`, pageSize: 2 });
    const old = sampleEvent({ time: '2020-01-01T00:00:00.000Z', grant: 'old' });
    const events = [
      sampleEvent({ grant: 'g1', tool: 'read', decision: 'allow' }),
      sampleEvent({ grant: 'g2', tool: 'write', decision: 'deny', reason: 'default_deny' }),
      sampleEvent({ grant: 'g1', tool: 'write', type: 'result', outcome: 'ok', durationMs: 3 }),
      sampleEvent({ grant: 'g2', tool: 'read', decision: 'deny', reason: 'rate_limited' }),
      sampleEvent({ grant: 'g1', tool: 'read', decision: 'allow' }),
    ];
    await log.append(old);
    for (const event of events) await log.append(event);
    const ids = (list: AuditEvent[]): string[] => list.map((e) => e.id);
    const [e0, e1, e2, e3, e4] = events.map((e) => e.id);

    expect(ids(await log.query({ grant: 'g1' }))).toEqual([e0, e2, e4]);
    expect(ids(await log.query({ tool: 'write' }))).toEqual([e1, e2]);
    expect(ids(await log.query({ decision: 'deny' }))).toEqual([e1, e3]);
    expect(ids(await log.query({ type: 'result' }))).toEqual([e2]);
    expect(ids(await log.query({ grant: 'g2', tool: 'read', decision: 'deny' }))).toEqual([e3]);
    expect(ids(await log.query({ limit: 2 }))).toEqual([e3, e4]);
    const since = new Date('2021-01-01T00:00:00.000Z');
    expect(ids(await log.query({ since }))).toEqual(events.map((e) => e.id));
    expect(ids(await log.query({ since, limit: 2 }))).toEqual([e0, e1]);
    expect(await log.query({ since: new Date(Date.now() + 3_600_000) })).toEqual([]);
    expect(await log.query({ grant: 'nobody' })).toEqual([]);
    expect((await log.query({ grant: 'g2' }))[0]).toEqual(events[1]);
  });

  it('mirrors every written event to the JSONL file with its hash and previous hash', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-audit-'));
    try {
      const p = `${prefix}jsonl:`;
      const file = path.join(dir, 'nested', 'audit.jsonl');
      const log = new AuditLog({ redis, prefix: p, jsonlPath: file });
      const events = Array.from({ length: 30 }, (_, i) => sampleEvent({ tool: `t${i}` }));
      await Promise.all(events.map((event) => log.append(event)));
      await log.close();
      const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
      const mirrored = lines.map(
        (line) => JSON.parse(line) as { event: AuditEvent; hash: string; prev: string },
      );
      expect(mirrored.map((line) => line.event)).toEqual(events);
      const stream = await redis.xrange(`${p}audit`, '-', '+');
      expect(mirrored.map((line) => [line.hash, line.prev])).toEqual(stream.map(([, f]) => [f[3], f[5]]));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('logs a failed mirror write as an error and still resolves once the event is in Redis', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-audit-'));
    try {
      const errors: string[] = [];
      const log = new AuditLog({
        redis,
        prefix: `${prefix}badmirror:`,
        jsonlPath: dir, // a directory: appendFile fails
        logger: { error: (_obj, msg) => errors.push(msg) },
      });
      await log.append(sampleEvent());
      await log.close();
      expect(errors).toEqual([expect.stringContaining('JSONL mirror write failed')]);
      expect(await log.verify()).toMatchObject({ ok: true, count: 1 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses an invalid event without touching the chain', async () => {
    const log = new AuditLog({ redis, prefix: `${prefix}invalid:` });
    await log.append(sampleEvent());
    const bad = { ...sampleEvent(), argsSha256: 'nope' };
    await expect(log.append(bad)).rejects.toMatchObject({ code: 'countersign.audit.invalid_event' });
    await expect(log.append(sampleEvent({ args: { n: Number.NaN } }))).rejects.toMatchObject({
      code: 'countersign.audit.invalid_event',
    });
    await log.append(sampleEvent({ tool: 'lone\ud800' }));
    expect(await log.verify()).toMatchObject({ ok: true, count: 2 });
    expect((await log.query({}))[1]?.tool).toBe('lone\ufffd');
  });

  it('refuses to extend a stream whose head key vanished', async () => {
    const p = `${prefix}nohead:`;
    const log = new AuditLog({ redis, prefix: p });
    await log.append(sampleEvent());
    await redis.del(`${p}audit:head`);
    const fresh = new AuditLog({ redis: other, prefix: p });
    await expect(fresh.append(sampleEvent())).rejects.toMatchObject({
      code: 'countersign.audit.chain_broken',
      message: expect.stringContaining(`SET ${p}audit:head`),
    });
    expect(await redis.xlen(`${p}audit`)).toBe(1);
  });

  it('close() waits for pending writes and refuses later appends', async () => {
    const log = new AuditLog({ redis, prefix: `${prefix}close:` });
    const pending = [log.append(sampleEvent()), log.append(sampleEvent())];
    await log.close();
    await Promise.all(pending);
    expect(await log.verify()).toMatchObject({ ok: true, count: 2 });
    await expect(log.append(sampleEvent())).rejects.toMatchObject({ code: 'countersign.audit.closed' });
  });
});
