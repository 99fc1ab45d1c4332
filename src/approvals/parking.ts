/**
 * Parked calls in this process: requests waiting for a person, and the right to run an approved call.
 *
 * A call that needs approval is a record in Redis (store.ts). In this process a ParkedCall watches it
 * (pub/sub from any replica, plus polling in case a message was missed) for as long as someone here cares:
 * a request holding for the outcome, or a live session that can run the call once approved. When the
 * approval is decided:
 *   approved  → one claim (Lua, across all processes) wins the right to execute; the winner runs the call once
 *               and hands the result to the requests holding here, or keeps it for the agent's identical retry;
 *   rejected, expired, cancelled → holders get the outcome; nothing runs.
 */
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../log/logger.js';
import type { ApprovalEvents } from './events.js';
import type { ApprovalJobs } from './jobs.js';
import type { ApprovalRecord } from './record.js';
import type { ApprovalStore } from './store.js';

/** How the approved call ended upstream, as the audit trail names it. */
export interface Execution {
  result: CallToolResult;
  /**
   * `not_started`: the call never reached the upstream and may still be run by the agent's retry.
   * `superseded`: the claim was no longer this process's (reported interrupted meanwhile): nothing ran.
   */
  outcome: 'ok' | 'tool_error' | 'upstream_error' | 'interrupted' | 'refused' | 'not_started' | 'superseded';
}

export type WaitOutcome =
  | { kind: 'result'; result: CallToolResult }
  /** Still waiting for a person (the request's hold time is over, or it holds not at all). */
  | { kind: 'pending'; record: ApprovalRecord }
  /** Rejected, expired or cancelled: not executed. */
  | { kind: 'refused'; record: ApprovalRecord }
  /** Approved and executed, but the result went to another request of the same call (or was taken). */
  | { kind: 'consumed'; record: ApprovalRecord }
  /** The approval record is gone (past its retention). */
  | { kind: 'gone' }
  /**
   * Nobody is left to answer: the client went away, or this process is stopping with the request still
   * holding. The approval stays parked for the agent's retry; nothing was decided.
   */
  | { kind: 'abandoned' }
  /** Redis cannot be reached. */
  | { kind: 'unavailable' };

export interface ParkingRequest {
  id: string;
  /** How long to wait for a person before answering "pending" (0: answer at once). */
  holdMs: number;
  /** The downstream request's signal: when the client gives up, the call stays parked. */
  signal: AbortSignal;
  /** The session's lifetime: while it lives, this process can run the call once approved. */
  sessionSignal: AbortSignal;
  sendProgress?: (progress: Progress) => Promise<void>;
  execute: (record: ApprovalRecord) => Promise<Execution>;
}

export interface ParkingOptions {
  store: ApprovalStore;
  events: ApprovalEvents;
  jobs: ApprovalJobs;
  logger: Logger;
  processId: string;
  now: () => number;
  /** Progress notifications to holding clients that sent a progress token (default 15 s). */
  progressIntervalMs: number;
  /** Re-read parked approvals this often, in case a pub/sub message was lost (default 5 s). */
  pollMs: number;
  /** Counts an execution as a call in flight from its claim to its recorded end (shutdown waits for it). */
  track?: <T>(work: () => Promise<T>) => Promise<T>;
}

/** Longest a request waits for an approved call that is running (possibly in another process). */
const RUNNING_WAIT_MS = 10 * 60_000;

interface Holder {
  deliver: (outcome: WaitOutcome) => void;
}

interface Executor {
  execute: ParkingRequest['execute'];
  sessionSignal: AbortSignal;
}

class ParkedCall {
  readonly holders = new Set<Holder>();
  readonly executors = new Set<Executor>();
  /** Undone on dispose (listeners on session signals, which outlive this call). */
  readonly cleanups: (() => void)[] = [];
  private checking: Promise<void> | undefined;
  private again = false;
  private running = false;
  /** An approved execution of this call runs in this process now. */
  get runningHere(): boolean {
    return this.running;
  }
  private readonly unsubscribe: () => void;
  disposed = false;

  constructor(
    readonly id: string,
    private readonly options: ParkingOptions,
    private readonly onDispose: () => void,
  ) {
    this.unsubscribe = options.events.on(id, () => void this.check());
  }

  /** Re-reads the record and acts on it; concurrent triggers collapse into one more pass. */
  check(): Promise<void> {
    if (this.checking) {
      this.again = true;
      return this.checking;
    }
    this.checking = (async () => {
      do {
        this.again = false;
        await this.step();
      } while (this.again && !this.disposed);
    })().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async step(): Promise<void> {
    if (this.disposed || this.running) return;
    const { store } = this.options;
    let record: ApprovalRecord | undefined;
    try {
      // Most looks find the call still pending: those read one field, not the whole record. The hold timer
      // reads the whole record (pendingNow), so a record that can no longer be read still ends its holder.
      if ((await store.status(this.id)) === 'pending') return;
      record = await store.get(this.id);
    } catch {
      return; // Redis down: keep waiting; the poll looks again.
    }
    if (!record) return this.settle({ kind: 'gone' });
    switch (record.status) {
      case 'pending':
        return;
      case 'rejected':
      case 'expired':
      case 'cancelled':
        return this.settle({ kind: 'refused', record });
      case 'approved':
        break;
    }
    if (record.execution === 'none') {
      const executor = [...this.executors].find((e) => !e.sessionSignal.aborted);
      if (!executor) return this.maybeDispose();
      let claimed = false;
      try {
        claimed = await store.claim(record.id, this.options.processId, this.options.now());
      } catch {
        return;
      }
      if (claimed) {
        const { track } = this.options;
        return track ? track(() => this.run(record, executor)) : this.run(record, executor);
      }
      this.again = true; // someone else claimed: read again to see how it went
      return;
    }
    if (record.execution === 'running') return; // finish publishes; the poll covers a lost message
    // Executed elsewhere: a holder here gets the kept result, if it is still there.
    if (this.holders.size === 0) return this.dispose();
    let kept: string | undefined;
    try {
      kept = await store.take(record);
    } catch {
      return;
    }
    if (kept) {
      try {
        return this.settle({ kind: 'result', result: JSON.parse(kept) as CallToolResult }, record);
      } catch {
        // fall through: an unreadable kept result is reported as consumed
      }
    }
    return this.settle({ kind: 'consumed', record });
  }

  private async run(record: ApprovalRecord, executor: Executor): Promise<void> {
    this.running = true;
    let execution: Execution;
    try {
      execution = await executor.execute(record);
    } catch (error) {
      execution = {
        outcome: 'upstream_error',
        result: {
          isError: true,
          content: [{ type: 'text', text: `the approved call failed: ${(error as Error).message}` }],
        },
      };
    }
    if (execution.outcome === 'not_started') {
      // Its session ended before it could run: give the claim back for the agent's retry.
      await this.options.store
        .unclaim(record.id, this.options.processId, this.options.now())
        .catch(() => false);
      this.running = false;
      if (this.holders.size > 0) void this.check();
      else this.maybeDispose();
      return;
    }
    if (execution.outcome === 'superseded') {
      // Reported interrupted by another process meanwhile: holders get that outcome from the record.
      this.running = false;
      if (this.holders.size > 0) void this.check();
      else this.maybeDispose();
      return;
    }
    // Single use: the result goes to exactly one request. A tasked approval's result belongs to its task (kept
    // for it by FINISH; requests waiting here are told it was delivered). Otherwise it is recorded as kept
    // for the agent's retry and then taken (one atomic step) for one request still waiting, so that a request
    // that leaves while the result is being recorded does not take it with it, and an identical retry held in
    // another process can take it at most instead of this one.
    const recorded = await recordExecution(this.options, this.options.processId, record, execution, false);
    let outcome: WaitOutcome = { kind: 'consumed', record };
    if (recorded && this.holders.size > 0) {
      try {
        const kept = await this.options.store.take(record);
        // Not there: a task owns it, or an identical retry (in any process) took it first.
        if (kept !== undefined) outcome = { kind: 'result', result: execution.result };
      } catch {
        // Redis gone this instant: the result stays kept, and the agent's retry takes it once Redis is back.
        outcome = { kind: 'unavailable' };
      }
    }
    // Running until here, so that a shutdown's release does not answer these requests "pending" meanwhile.
    this.running = false;
    if (recorded && this.holders.size === 0) return this.dispose();
    this.settle(outcome, record);
  }

  /** Answers every holder. A result is handed to one of them (the first to hold); the others are told it was used. */
  private settle(outcome: WaitOutcome, record?: ApprovalRecord): void {
    let first = true;
    for (const holder of [...this.holders]) {
      if (outcome.kind === 'result' && !first) {
        holder.deliver(record ? { kind: 'consumed', record } : { kind: 'gone' });
      } else holder.deliver(outcome);
      first = false;
    }
    this.holders.clear();
    this.dispose();
  }

  /**
   * Shutdown: requests holding for a person are answered "pending" now (the approval stays in Redis for the
   * agent's retry or any other process); an execution running here is left to finish within the grace period.
   */
  async release(): Promise<void> {
    if (this.running || this.holders.size === 0) return;
    let record: ApprovalRecord | undefined;
    try {
      record = await this.options.store.get(this.id);
    } catch {
      return this.settle({ kind: 'unavailable' });
    }
    if (!record) return this.settle({ kind: 'gone' });
    if (record.status === 'pending' || record.status === 'approved') this.settle({ kind: 'pending', record });
    else await this.check();
  }

  /**
   * Shutdown: holders are let go (the approval stays parked) and the call is no longer watched. An execution
   * still running past the grace period keeps its result for the retry, as for a client that left.
   */
  abandon(): void {
    this.settle({ kind: 'abandoned' });
  }

  maybeDispose(): void {
    if (this.holders.size > 0 || this.running) return;
    if ([...this.executors].some((e) => !e.sessionSignal.aborted)) return;
    this.dispose();
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.unsubscribe();
    for (const cleanup of this.cleanups.splice(0)) cleanup();
    this.onDispose();
  }
}

/**
 * Records how an approved call's single execution ended (and keeps its result for the agent's retry unless a
 * waiting request got it, and for tasks), then queues the Slack thread reply. Redis errors are retried for
 * about half a minute: a result must not be dropped for a blip. Returns false when it could not be recorded,
 * or when the claim was no longer `claimant`'s (the call was marked interrupted meanwhile). Never throws.
 */
export async function recordExecution(
  options: Pick<ParkingOptions, 'store' | 'jobs' | 'logger' | 'now'>,
  claimant: string,
  record: ApprovalRecord,
  execution: Execution,
  delivered: boolean,
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      const recorded = await options.store.finish(
        record,
        claimant,
        execution.outcome === 'interrupted' ? 'interrupted' : 'done',
        execution.outcome,
        options.now(),
        JSON.stringify(execution.result),
        delivered,
      );
      if (!recorded) {
        options.logger.error(
          { approvalId: record.id, outcome: execution.outcome },
          'approval: the execution ended after it had been reported interrupted; its result is in the audit trail only',
        );
        return false;
      }
      const finished = await options.store.get(record.id);
      if (finished) await options.jobs.executed(finished).catch(() => undefined);
      return true;
    } catch (error) {
      if (attempt >= 12) {
        options.logger.error(
          { err: (error as Error).message, approvalId: record.id },
          'approval: could not record the execution',
        );
        return false;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * attempt, 5000)));
    }
  }
}

export class Parking {
  private readonly parked = new Map<string, ParkedCall>();
  private poll: NodeJS.Timeout | undefined;
  /** A poll is on its way. */
  private polling = false;
  /** Shutdown has begun: nothing new holds. */
  private releasing = false;
  /** close() ran. */
  private closed = false;

  constructor(private readonly options: ParkingOptions) {}

  /**
   * One timer, in case a pub/sub message was lost: one script asks which watched calls are no longer
   * pending (a round trip per thousand calls, not one per call, and next to no garbage while thousands are
   * held), and only those are looked at again.
   */
  private startPolling(): void {
    if (this.poll) return;
    this.poll = setInterval(() => {
      if (this.parked.size === 0) {
        clearInterval(this.poll);
        this.poll = undefined;
        return;
      }
      void this.pollOnce();
    }, this.options.pollMs);
    this.poll.unref();
  }

  private async pollOnce(): Promise<void> {
    if (this.polling) return; // the last poll is still on its way (a slow Redis): skip this one
    this.polling = true;
    try {
      const changed = await this.options.store.notPending([...this.parked.keys()]);
      for (const id of changed) void this.parked.get(id)?.check();
    } catch {
      // Redis down: keep waiting; the next poll (or the reconnect's notification) looks again.
    } finally {
      this.polling = false;
    }
  }

  /** Calls watched by this process (holding requests or live sessions able to run them). */
  get size(): number {
    return this.parked.size;
  }

  private parkedCall(id: string): ParkedCall {
    let call = this.parked.get(id);
    if (!call || call.disposed) {
      const created: ParkedCall = new ParkedCall(id, this.options, () => {
        if (this.parked.get(id) === created) this.parked.delete(id);
      });
      this.parked.set(id, created);
      call = created;
      this.startPolling();
    }
    return call;
  }

  /**
   * Waits for the approval's outcome for at most `holdMs` while it is pending (sending progress meanwhile);
   * once approved, waits for the single execution. The call stays watched after the request returns, for as
   * long as its session lives, so an approval still runs it and keeps the result for the retry.
   */
  async wait(request: ParkingRequest): Promise<WaitOutcome> {
    // Closed (the process is going down): nothing is watched any more, so nothing may wait.
    if (this.closed) return { kind: 'abandoned' };
    const call = this.parkedCall(request.id);
    const executor: Executor = { execute: request.execute, sessionSignal: request.sessionSignal };
    call.executors.add(executor);
    const onSessionEnd = (): void => {
      call.executors.delete(executor);
      call.maybeDispose();
    };
    request.sessionSignal.addEventListener('abort', onSessionEnd, { once: true });
    call.cleanups.push(() => request.sessionSignal.removeEventListener('abort', onSessionEnd));
    if (request.sessionSignal.aborted) onSessionEnd();

    return new Promise<WaitOutcome>((resolve) => {
      let progressTimer: NodeJS.Timeout | undefined;
      let holdTimer: NodeJS.Timeout | undefined;
      let done = false;
      const finish = (outcome: WaitOutcome): void => {
        if (done) return;
        done = true;
        call.holders.delete(holder);
        clearInterval(progressTimer);
        clearTimeout(holdTimer);
        request.signal.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      const holder: Holder = { deliver: finish };
      const pendingNow = async (): Promise<void> => {
        try {
          const record = await this.options.store.get(request.id);
          // No readable record (gone, or its call parts lost): nothing will ever decide it for this holder.
          if (!record) return finish({ kind: 'gone' });
          if (
            record.status === 'pending' ||
            (record.status === 'approved' && record.execution === 'running')
          ) {
            return finish({ kind: 'pending', record });
          }
          // Decided meanwhile: the watcher delivers the outcome.
          void call.check();
        } catch {
          finish({ kind: 'unavailable' });
        }
      };
      const onAbort = (): void => {
        finish({ kind: 'abandoned' });
        call.maybeDispose();
      };
      request.signal.addEventListener('abort', onAbort, { once: true });
      call.holders.add(holder);
      // A client that left while its call was on its way here: nobody to hold for.
      if (request.signal.aborted) onAbort();

      void call.check().then(async () => {
        if (done) return;
        let record: ApprovalRecord | undefined;
        try {
          record = await this.options.store.get(request.id);
        } catch {
          return finish({ kind: 'unavailable' });
        }
        if (done) return;
        if (!record) return finish({ kind: 'gone' });
        if (record.status !== 'pending') {
          // Stopping, and the execution is not this process's to finish: the agent asks again elsewhere.
          if (this.releasing && !call.runningHere) return finish({ kind: 'pending', record });
          // Approved: wait for the single execution, but not forever (its runner may be another process
          // that died); then the agent is told it was approved and to ask again for the result.
          holdTimer = setTimeout(() => void pendingNow(), RUNNING_WAIT_MS);
          return;
        }
        if (request.holdMs <= 0 || this.releasing) return finish({ kind: 'pending', record });
        holdTimer = setTimeout(() => void pendingNow(), request.holdMs);
        const send = request.sendProgress;
        if (send) {
          let beat = 0;
          const started = this.options.now();
          progressTimer = setInterval(() => {
            beat += 1;
            const waited = Math.round((this.options.now() - started) / 1000);
            void send({
              progress: beat,
              message: `waiting for a reviewer to decide approval ${request.id} (${waited} s so far)`,
            }).catch(() => undefined);
          }, this.options.progressIntervalMs);
        }
      });
    });
  }

  /**
   * See ParkedCall.release: at shutdown, holding requests are told their call is still pending. From here
   * on, requests that park (still on their way through the gateway) are answered "pending" at once.
   */
  async releaseHolders(): Promise<number> {
    this.releasing = true;
    const holding = [...this.parked.values()].filter((call) => call.holders.size > 0);
    await Promise.all(holding.map((call) => call.release()));
    return holding.length;
  }

  /**
   * Stops watching everything (shutdown): the approvals stay in Redis. A request still holding here (its
   * session is gone by now) is let go, so that no hold timer outlives the process's work.
   */
  close(): void {
    this.releasing = true;
    this.closed = true;
    clearInterval(this.poll);
    this.poll = undefined;
    for (const call of [...this.parked.values()]) call.abandon();
  }
}
