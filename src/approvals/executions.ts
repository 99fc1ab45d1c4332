/**
 * The execution queue (BullMQ): approved calls that MCP tasks wait for, run by whichever gateway process takes
 * the job, with no agent request open. One job per approval (job id `run-<approval id>`).
 *
 * A job whose process dies while it runs is never retried (`maxStalledCount: 0`): the call may have reached
 * the upstream, and the rule is at most once. The claim in Redis (CLAIM_SCRIPT) guards this as well, and the
 * execution sweep (recovery.ts) marks such a call interrupted.
 */
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from '../log/logger.js';

interface ExecutionJobData {
  id: string;
}

export const EXECUTION_QUEUE = 'countersign-executions';

export interface ApprovalExecutionsOptions {
  redisUrl: string;
  prefix: string;
  logger: Logger;
  /** Approved calls run at once per process. */
  concurrency?: number;
}

export class ApprovalExecutions {
  private readonly queue: Queue<ExecutionJobData, unknown, 'run'>;
  private readonly queueRedis: Redis;
  private worker: Worker<ExecutionJobData, unknown, 'run'> | undefined;
  private workerRedis: Redis | undefined;

  constructor(private readonly options: ApprovalExecutionsOptions) {
    this.queueRedis = new Redis(options.redisUrl, {
      maxRetriesPerRequest: null,
      enableOfflineQueue: false,
      connectionName: 'countersign:executions',
    });
    this.queueRedis.on('error', () => undefined);
    this.queue = new Queue(EXECUTION_QUEUE, {
      connection: this.queueRedis,
      prefix: `${options.prefix}bull`,
    });
    this.queue.on('error', (error) => options.logger.debug({ err: error.message }, 'execution queue error'));
  }

  /** Starts this process's worker with what running one approved call means. */
  start(run: (approvalId: string) => Promise<void>): void {
    this.workerRedis = new Redis(this.options.redisUrl, {
      maxRetriesPerRequest: null,
      connectionName: 'countersign:executions-worker',
    });
    this.workerRedis.on('error', () => undefined);
    this.worker = new Worker(EXECUTION_QUEUE, (job) => run(job.data.id), {
      connection: this.workerRedis,
      prefix: `${this.options.prefix}bull`,
      concurrency: this.options.concurrency ?? 64,
      maxStalledCount: 0,
    });
    this.worker.on('error', (error) =>
      this.options.logger.debug({ err: error.message }, 'execution worker error'),
    );
    this.worker.on('failed', (job, error) =>
      this.options.logger.warn({ approvalId: job?.data.id, err: error.message }, 'approved call job failed'),
    );
  }

  /**
   * Queues the run. A job still waiting or running for it makes this a no-op; a finished or failed one (its run
   * was lost before the claim, e.g. Redis blinked) is replaced, so the sweep can always queue it again.
   */
  async enqueue(approvalId: string): Promise<void> {
    const existing = await this.queue.getJob(`run-${approvalId}`);
    if (existing) {
      const state = await existing.getState();
      if (state !== 'failed' && state !== 'completed' && state !== 'unknown') return;
      await existing.remove().catch(() => undefined);
    }
    await this.queue.add(
      'run',
      { id: approvalId },
      { jobId: `run-${approvalId}`, removeOnComplete: true, removeOnFail: { age: 24 * 3600 }, attempts: 1 },
    );
  }

  /** Stops taking new jobs (shutdown); jobs already running go on. */
  async pause(): Promise<void> {
    await this.worker?.pause(true).catch(() => undefined);
  }

  /** Stops taking jobs; a call running here finishes first (BullMQ waits for active jobs). */
  async close(): Promise<void> {
    await this.worker?.close().catch(() => undefined);
    await this.queue.close().catch(() => undefined);
    this.workerRedis?.disconnect();
    this.queueRedis.disconnect();
  }
}
