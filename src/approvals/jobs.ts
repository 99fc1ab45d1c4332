/**
 * The approval queue (BullMQ): the work that follows a parked call and may need retrying or doing later,
 * by whichever gateway process is free.
 *   notify  — post the Slack message; Slack errors are retried with backoff (Retry-After honoured) while
 *             the approval is pending, and never past its expiry.
 *   expire  — (queued by earlier versions, still honoured) expire the approval if nobody decided it. Expiry is
 *             now the recovery sweep's job (recovery.ts), which costs no queue entry per parked call.
 *   update  — redraw the Slack message (votes, outcome; buttons gone once decided).
 *   report  — reply in the message's thread whether the approved call succeeded upstream.
 * Jobs only read the approval record and act on its current state, so a repeated job is harmless.
 */
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { Logger } from '../log/logger.js';
import { decidedMessage, executionReply, pendingMessage } from '../slack/blocks.js';
// Type only: the Slack Web API client (and its package) is loaded only when Slack is configured.
import type { SlackApi } from '../slack/web.js';
import type { ApprovalRecord } from './record.js';
import type { ApprovalStore } from './store.js';

export type ApprovalJobName = 'notify' | 'expire' | 'update' | 'report';
interface ApprovalJobData {
  id: string;
}

export const APPROVAL_QUEUE = 'countersign-approvals';
/** Redrawing a message or replying in its thread is retried for up to about an hour. */
const FOLLOW_UP_ATTEMPTS = 40;
const MAX_BACKOFF_MS = 60_000;

export interface ApprovalJobHooks {
  /** Called by the process whose expire job moved the approval to `expired` (audit, wake waiters). */
  onExpired(record: ApprovalRecord): Promise<void>;
}

export interface ApprovalJobsOptions {
  redisUrl: string;
  prefix: string;
  store: ApprovalStore;
  slack: SlackApi | undefined;
  logger: Logger;
  hooks: ApprovalJobHooks;
  now: () => number;
  /** Jobs run at once per process. */
  concurrency?: number;
}

function backoff(attemptsMade: number, error: Error | undefined, slack: SlackApi | undefined): number {
  const hint = slack?.retryHint(error) ?? { retry: false };
  if (hint.afterMs !== undefined) return hint.afterMs;
  return Math.min(500 * 2 ** Math.max(0, attemptsMade - 1), MAX_BACKOFF_MS);
}

export class ApprovalJobs {
  private readonly queue: Queue<ApprovalJobData, unknown, ApprovalJobName>;
  private worker: Worker<ApprovalJobData, unknown, ApprovalJobName> | undefined;
  private readonly queueRedis: Redis;
  private workerRedis: Redis | undefined;

  constructor(private readonly options: ApprovalJobsOptions) {
    // BullMQ needs connections that wait for Redis rather than fail a blocking command after one retry.
    this.queueRedis = new Redis(options.redisUrl, {
      maxRetriesPerRequest: null,
      enableOfflineQueue: false,
      connectionName: 'countersign:queue',
    });
    this.queueRedis.on('error', () => undefined);
    this.queue = new Queue(APPROVAL_QUEUE, { connection: this.queueRedis, prefix: `${options.prefix}bull` });
    this.queue.on('error', (error) => options.logger.debug({ err: error.message }, 'approval queue error'));
  }

  /** Starts this process's worker: every gateway process works the shared queue. */
  start(): void {
    this.workerRedis = new Redis(this.options.redisUrl, {
      maxRetriesPerRequest: null,
      connectionName: 'countersign:worker',
    });
    this.workerRedis.on('error', () => undefined);
    this.worker = new Worker(APPROVAL_QUEUE, (job) => this.process(job), {
      connection: this.workerRedis,
      prefix: `${this.options.prefix}bull`,
      concurrency: this.options.concurrency ?? 16,
      settings: {
        backoffStrategy: (attemptsMade, _type, error) => backoff(attemptsMade, error, this.options.slack),
      },
    });
    this.worker.on('error', (error) =>
      this.options.logger.debug({ err: error.message }, 'approval worker error'),
    );
    this.worker.on('failed', (job, error) =>
      this.options.logger.warn(
        { job: job?.name, approvalId: job?.data.id, attempts: job?.attemptsMade, err: error.message },
        'approval job failed',
      ),
    );
  }

  /** A call was parked: post its Slack message (when it has a channel and Slack is on). */
  async parked(record: ApprovalRecord): Promise<void> {
    if (!record.channel || !this.options.slack) return;
    await this.queue.add(
      'notify',
      { id: record.id },
      {
        removeOnComplete: true,
        removeOnFail: { age: 24 * 3600 },
        jobId: `notify-${record.id}`,
        attempts: 1000,
        backoff: { type: 'custom' },
      },
    );
  }

  /** After a vote or a decision: redraw the message (and drop the expiry job once decided). */
  async decided(record: ApprovalRecord): Promise<void> {
    if (record.status !== 'pending') await this.queue.remove(`expire-${record.id}`).catch(() => 0);
    await this.followUp('update', record);
  }

  async executed(record: ApprovalRecord): Promise<void> {
    await this.followUp('report', record);
  }

  private async followUp(name: 'update' | 'report', record: ApprovalRecord): Promise<void> {
    if (!record.channel || !this.options.slack) return;
    await this.queue.add(
      name,
      { id: record.id },
      {
        removeOnComplete: true,
        removeOnFail: { age: 24 * 3600 },
        attempts: FOLLOW_UP_ATTEMPTS,
        backoff: { type: 'custom' },
      },
    );
  }

  /**
   * Expires the approval if it is pending and due (the expire job, or the sweep at start when no process was
   * running at the expiry time). Returns false when it is not due yet.
   */
  async expireNow(id: string): Promise<boolean> {
    const { store, now } = this.options;
    const result = await store.transition(id, 'expire', { id: '', name: '' }, '', now());
    if (result.kind === 'unknown') await store.forgetPending(id); // its record is gone: drop it from the index
    if (result.kind === 'decided' || result.kind === 'expired_now') await this.afterExpiry(id);
    return result.kind !== 'not_due';
  }

  /** What follows an expiry, whoever caused it (the sweep, or a late click): audit, wake waiters, redraw. */
  async afterExpiry(id: string): Promise<void> {
    const record = await this.options.store.get(id);
    if (!record) return;
    await this.options.hooks.onExpired(record);
    await this.decided(record);
  }

  private async process(job: Job<ApprovalJobData, unknown, ApprovalJobName>): Promise<void> {
    const { store, slack, now } = this.options;
    if (job.name === 'expire') {
      if (!(await this.expireNow(job.data.id))) throw new Error('expire job ran before the expiry time');
      return;
    }
    const record = await store.get(job.data.id);
    if (!record || !slack || !record.channel) return;
    switch (job.name) {
      case 'notify': {
        if (record.slackTs) return;
        if (record.status !== 'pending') return;
        if (now() >= record.expiresAt)
          throw new UnrecoverableError('approval expired before Slack could be reached');
        try {
          const posted = await slack.post(record.channel, pendingMessage(record));
          await store.setSlackMessage(record.id, posted.channel, posted.ts);
        } catch (error) {
          if (!slack.retryHint(error).retry)
            throw new UnrecoverableError(`Slack refused the message: ${(error as Error).message}`);
          throw error;
        }
        // Decided (or voted on) while the message was being posted: draw the current state.
        const current = await store.get(record.id);
        if (current && (current.status !== 'pending' || current.votes > 0))
          await this.followUp('update', current);
        return;
      }
      case 'update': {
        // Not posted yet: the notify job draws the current state once it has posted.
        if (!record.slackTs || !record.slackChannel) return;
        const message = record.status === 'pending' ? pendingMessage(record) : decidedMessage(record);
        await this.slackCall(() => slack.update(record.slackChannel ?? '', record.slackTs ?? '', message));
        return;
      }
      case 'report': {
        if (!record.slackTs || !record.slackChannel) return;
        await this.slackCall(() =>
          slack.threadReply(record.slackChannel ?? '', record.slackTs ?? '', executionReply(record)),
        );
        return;
      }
    }
  }

  private async slackCall(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      if (!this.options.slack?.retryHint(error).retry)
        throw new UnrecoverableError(`Slack refused the update: ${(error as Error).message}`);
      throw error;
    }
  }

  async counts(): Promise<Record<string, number>> {
    return this.queue.getJobCounts('waiting', 'delayed', 'active', 'failed');
  }

  async close(): Promise<void> {
    await this.worker?.close().catch(() => undefined);
    await this.queue.close().catch(() => undefined);
    this.workerRedis?.disconnect();
    this.queueRedis.disconnect();
  }
}
