/**
 * Bounds the steps of a shutdown. Any step may wait on Redis (BullMQ closing its connections, a queued write,
 * a spool drain), and with Redis unreachable — or just restarted, before ioredis reconnected — such a wait has
 * no end. Each step gets what is left of a shared budget; a step still running when it is spent is left behind
 * (logged), so shutdown goes on and the process can exit. What must not be lost is on disk before this point:
 * audit events that cannot reach Redis are in the spool file.
 */
import type { Logger } from '../log/logger.js';

export class ShutdownClock {
  private readonly deadline: number;
  /** Steps that did not finish in time (their work may still hold connections open). */
  readonly overrun: string[] = [];

  constructor(
    budgetMs: number,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.deadline = this.now() + budgetMs;
  }

  /** Milliseconds left of the budget (never negative). */
  get remaining(): number {
    return Math.max(0, this.deadline - this.now());
  }

  /** Waits for `work` at most `capMs` and at most what is left of the budget; true when it finished in time. */
  async step(
    label: string,
    work: () => Promise<unknown>,
    capMs = Number.POSITIVE_INFINITY,
  ): Promise<boolean> {
    const limit = Math.min(capMs, this.remaining);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), limit);
    });
    const done = (async () => {
      await work();
      return true as const;
    })().catch((error: Error) => {
      // A step that fails has finished: shutdown goes on, the failure is only worth a line in the log.
      this.logger.warn({ step: label, err: error.message }, 'shutdown step failed');
      return true as const;
    });
    const finished = await Promise.race([done, timedOut]);
    clearTimeout(timer);
    if (!finished) {
      this.overrun.push(label);
      this.logger.warn(
        { step: label, waited_ms: limit },
        'shutdown step did not finish in time (Redis unreachable?); going on without it',
      );
    }
    return finished;
  }
}
