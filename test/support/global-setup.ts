import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedRedis } from '../../src/redis/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/** One real redis-server for the whole run; each test uses its own key prefix. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-test-redis-'));
  const redis = await startEmbeddedRedis({ dir, reuse: false });
  project.provide('redisUrl', redis.url);
  return async () => {
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
