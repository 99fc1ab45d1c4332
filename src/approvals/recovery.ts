/**
 * Keeps approvals moving when processes die. Every gateway process:
 *   - keeps a liveness key (`<p>process:<id>`) while it lives, refreshed every third of `liveness_ms`;
 *   - sweeps at start and then every `liveness_ms`:
 *       interrupted — an execution marked running whose claimant's liveness key is gone: that process died
 *                     while the call ran upstream. It is marked interrupted (INTERRUPT_SCRIPT), never re-run;
 *       awaiting    — approved calls that tasks wait for and no job has claimed (the process that approved
 *                     them died before queueing, or the job was lost): queued again;
 *   - and every `expiryMs` (1 s) expires pending approvals whose time has come (the pending index is sorted by
 *     expiry, so this is one cheap read when nothing is due; the transition is atomic, so replicas racing for
 *     the same approval expire it once). This also covers approvals that expired while no process ran.
 */
import type { Logger } from '../log/logger.js';
import type { ApprovalRecord } from './record.js';
import type { ApprovalStore } from './store.js';

export interface RecoveryHooks {
  /** The result JSON the agent's retry or task is given for an interrupted call. */
  interruptedResult(record: ApprovalRecord): string;
  /** After marking it: audit, tell the Slack thread, wake waiters. */
  interrupted(record: ApprovalRecord): Promise<void>;
  runAwaiting(approvalId: string): Promise<void>;
  expireOverdue(approvalId: string): Promise<void>;
}

export interface RecoveryOptions {
  store: ApprovalStore;
  processId: string;
  livenessMs: number;
  /** How often pending approvals are checked for expiry (default 1 s). */
  expiryMs?: number;
  logger: Logger;
  now: () => number;
  hooks: RecoveryHooks;
}

/** An approved call's job is queued when it is approved; the sweep only picks up ones older than this. */
const AWAITING_GRACE_MS = 2_000;

export class ExecutionRecovery {
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private expiring: Promise<void> | undefined;

  constructor(private readonly options: RecoveryOptions) {}

  /** Resolves once the liveness key is set (so nothing is claimed here before it exists). */
  async start(): Promise<void> {
    const { livenessMs } = this.options;
    await this.beat();
    this.heartbeatTimer = setInterval(() => void this.beat(), Math.max(250, Math.floor(livenessMs / 3)));
    this.heartbeatTimer.unref();
    void this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), livenessMs);
    this.sweepTimer.unref();
    void this.expireDue();
    this.expiryTimer = setInterval(() => void this.expireDue(), this.options.expiryMs ?? 1000);
    this.expiryTimer.unref();
  }

  /** Expires every pending approval whose time has come (exposed for tests). */
  expireDue(): Promise<void> {
    this.expiring ??= (async () => {
      const { store, now, hooks, logger } = this.options;
      try {
        for (let page = 0; page < 20; page++) {
          const due = await store.overdue(now());
          // Replicas sweep the same index: each starts at a random point, so a burst is shared out, and
          // works through it a few at a time. The transition is atomic: an approval expires once.
          const offset = Math.floor(Math.random() * due.length);
          const order = [...due.slice(offset), ...due.slice(0, offset)];
          let next = 0;
          await Promise.all(
            Array.from({ length: Math.min(16, order.length) }, async () => {
              for (let i = next++; i < order.length; i = next++) {
                const id = order[i];
                if (id === undefined) continue;
                await hooks.expireOverdue(id).catch((error: Error) => {
                  logger.warn(
                    { err: error.message, approvalId: id },
                    'could not expire an approval; retrying next second',
                  );
                });
              }
            }),
          );
          if (due.length < 500) return;
        }
      } catch (error) {
        logger.debug({ err: (error as Error).message }, 'expiry sweep skipped (Redis unavailable?)');
      }
    })().finally(() => {
      this.expiring = undefined;
    });
    return this.expiring;
  }

  private async beat(): Promise<void> {
    try {
      await this.options.store.heartbeat(this.options.processId, this.options.livenessMs);
    } catch {
      // Redis down: nothing can be claimed meanwhile either; the next beat renews it.
    }
  }

  /** One pass (exposed for tests); concurrent calls share the pass in progress. */
  sweep(): Promise<void> {
    this.sweeping ??= this.pass().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async pass(): Promise<void> {
    const { store, now, logger, hooks, processId } = this.options;
    try {
      for (const id of await store.running()) {
        const record = await store.get(id);
        if (!record) {
          await store.forgetRunning(id);
          continue;
        }
        if (!record.executor || record.execution !== 'running' || record.executor === processId) continue;
        if (await store.interrupt(record, record.executor, now(), hooks.interruptedResult(record))) {
          logger.warn(
            { approvalId: id, executor: record.executor },
            'approved call interrupted: the process running it died; it will not be run again',
          );
          const marked = await store.get(id);
          if (marked) await hooks.interrupted(marked).catch(() => undefined);
        }
      }
      for (const id of await store.awaitingExecution(now() - AWAITING_GRACE_MS)) {
        const record = await store.get(id);
        if (!record || record.status !== 'approved' || record.execution !== 'none') {
          await store.forgetAwaiting(id);
          continue;
        }
        await hooks.runAwaiting(id);
      }
    } catch (error) {
      logger.debug({ err: (error as Error).message }, 'approval sweep skipped (Redis unavailable?)');
    }
  }

  /** Stops the timers and drops the liveness key (a clean stop leaves nothing running here). */
  async close(): Promise<void> {
    clearInterval(this.heartbeatTimer);
    clearInterval(this.sweepTimer);
    clearInterval(this.expiryTimer);
    await this.sweeping;
    await this.expiring;
    await this.options.store.dropHeartbeat(this.options.processId).catch(() => undefined);
  }
}
