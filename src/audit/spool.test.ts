import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ulid } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { connectTestRedis, dropPrefix, uniquePrefix } from '../../test/support/redis.js';
import { createRedis } from '../redis/client.js';
import type { AuditEvent } from './event.js';
import { AuditLog } from './log.js';
import { AuditSpool } from './spool.js';

const quiet = { warn: () => undefined, error: () => undefined, info: () => undefined };

function event(tool: string): AuditEvent {
  return {
    id: ulid(),
    time: new Date().toISOString(),
    type: 'decision',
    callId: ulid(),
    grant: 'g',
    owner: 'o',
    session: null,
    server: 's',
    tool,
    argsSha256: '0'.repeat(64),
    decision: 'deny',
    reason: 'store_unavailable',
    rule: null,
    message: 'm',
    counters: [],
  };
}

describe('AuditSpool', () => {
  let dir: string;
  let redis: Redis;
  const prefix = uniquePrefix('spool');
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-spool-'));
    redis = await connectTestRedis();
  });
  afterAll(async () => {
    await dropPrefix(redis, prefix);
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps events on disk while Redis is down, and the next process appends them in order', async () => {
    const file = path.join(dir, 'spool.jsonl');
    const dead = createRedis('redis://127.0.0.1:1', 'dead');
    dead.on('error', () => undefined);
    const down = new AuditSpool(new AuditLog({ redis: dead, prefix, logger: quiet }), file, quiet);
    for (const tool of ['a', 'b', 'c']) await down.write(event(tool));
    expect(down.size).toBe(3);
    await down.close();
    dead.disconnect();
    expect((await readFile(file, 'utf8')).trim().split('\n')).toHaveLength(3);

    const log = new AuditLog({ redis, prefix, logger: quiet });
    const next = new AuditSpool(log, file, quiet);
    await next.drain();
    await next.write(event('d'));
    expect((await log.query()).map((e) => e.tool)).toEqual(['a', 'b', 'c', 'd']);
    expect((await log.verify()).ok).toBe(true);
    await expect(readFile(file, 'utf8')).rejects.toThrow();
    await next.close();
  });

  it('an event written after its log closed (a call that outlived shutdown) is spooled for the next process', async () => {
    const file = path.join(dir, 'closed.jsonl');
    const closedPrefix = `${prefix}closed:`;
    const log = new AuditLog({ redis, prefix: closedPrefix, logger: quiet });
    const stopping = new AuditSpool(log, file, quiet);
    await stopping.write(event('before'));
    await stopping.close();
    await log.close();
    await stopping.write(event('after'));
    expect(stopping.size).toBe(1);
    expect((await readFile(file, 'utf8')).trim().split('\n')).toHaveLength(1);

    const reopened = new AuditLog({ redis, prefix: closedPrefix, logger: quiet });
    await new AuditSpool(reopened, file, quiet).drain();
    expect((await reopened.query()).map((e) => e.tool)).toEqual(['before', 'after']);
    expect((await reopened.verify()).ok).toBe(true);
  });
});
