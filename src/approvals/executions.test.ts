import { afterAll, describe, expect, it } from 'vitest';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from '../../test/support/redis.js';
import { silentLogger } from '../log/logger.js';
import { ApprovalExecutions } from './executions.js';

describe('ApprovalExecutions (BullMQ on a real Redis)', () => {
  const prefix = uniquePrefix('executions');
  const queue = new ApprovalExecutions({ redisUrl: testRedisUrl(), prefix, logger: silentLogger() });
  afterAll(async () => {
    await queue.close();
    const redis = await connectTestRedis();
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  it('runs a queued approval once, and a run that failed before its claim can be queued again', async () => {
    const runs: string[] = [];
    let failFirst = true;
    // Both enqueues happen before any worker runs, so the second one meets a job that is still waiting (once the
    // job has failed, enqueue replaces it on purpose; see the second half of this test).
    await queue.enqueue('A1');
    await queue.enqueue('A1'); // still queued: not added twice
    queue.start(async (id) => {
      runs.push(id);
      if (failFirst) {
        failFirst = false;
        throw new Error('Redis blinked');
      }
    });
    const deadline = Date.now() + 10_000;
    while (runs.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    expect(runs).toEqual(['A1']); // failed, and not retried by BullMQ on its own
    await queue.enqueue('A1'); // the recovery sweep queues it again
    while (runs.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(runs).toEqual(['A1', 'A1']);
  });
});
