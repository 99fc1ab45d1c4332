import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import type { Redis } from 'ioredis';
import { createRedis, waitReady } from '../../src/redis/client.js';

export function testRedisUrl(): string {
  return inject('redisUrl');
}

/** A key prefix no other test uses, so tests can share one redis-server. */
export function uniquePrefix(label: string): string {
  return `cstest:${label}:${randomBytes(4).toString('hex')}:`;
}

export async function connectTestRedis(name = 'test'): Promise<Redis> {
  const redis = createRedis(testRedisUrl(), name);
  await waitReady(redis, 5000);
  return redis;
}

/** Deletes every key under a prefix. */
export async function dropPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
}
