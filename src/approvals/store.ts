import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { LuaScript } from '../redis/script.js';
import type { ApprovalSpec } from '../policy/types.js';
import { callPartsJson, newRecordFields, parseStoredRecord } from './record.js';
import type { ApprovalRecord, ApprovalStatus } from './record.js';
import {
  ATTACH_TASK_SCRIPT,
  CLAIM_SCRIPT,
  CREATE_SCRIPT,
  FINISH_SCRIPT,
  INTERRUPT_SCRIPT,
  START_SCRIPT,
  TAKE_SCRIPT,
  NOT_PENDING_SCRIPT,
  OWN_RESULT_SCRIPT,
  TRANSITION_SCRIPT,
  UNBIND_SCRIPT,
  UNCLAIM_SCRIPT,
} from './scripts.js';

/** What an approval id looks like (ULIDs are generated; anything else read from outside is no approval). */
const APPROVAL_ID = /^[0-9A-Za-z]{1,64}$/;
/** Records looked at per round trip by notPending (bounded work per Lua call). */
const NOT_PENDING_BATCH = 1000;
const createScript = new LuaScript(CREATE_SCRIPT);
const transitionScript = new LuaScript(TRANSITION_SCRIPT);
const claimScript = new LuaScript(CLAIM_SCRIPT);
const finishScript = new LuaScript(FINISH_SCRIPT);
const takeScript = new LuaScript(TAKE_SCRIPT);
const notPendingScript = new LuaScript(NOT_PENDING_SCRIPT);
const unbindScript = new LuaScript(UNBIND_SCRIPT);
const unclaimScript = new LuaScript(UNCLAIM_SCRIPT);
const interruptScript = new LuaScript(INTERRUPT_SCRIPT);
const attachTaskScript = new LuaScript(ATTACH_TASK_SCRIPT);
const startScript = new LuaScript(START_SCRIPT);
const ownResultScript = new LuaScript(OWN_RESULT_SCRIPT);

/** How long a decided approval (and a kept result) stays readable after its expiry time. */
export const KEEP_AFTER_EXPIRY_SECONDS = 24 * 3600;

/** The exact call an approval is bound to. */
export interface BoundCall {
  server: string;
  tool: string;
  grant: string;
  argsSha256: string;
}

export interface NewApproval extends BoundCall {
  id: string;
  owner: string;
  session: string;
  callId: string;
  args: Record<string, unknown>;
  rule: string;
  message: string;
  spec: ApprovalSpec;
  now: number;
  /** An MCP task waits for it: once approved, the background worker runs the call. */
  tasked?: boolean;
}

export type CreateResult =
  | { kind: 'created'; id: string }
  | { kind: 'existing'; id: string }
  | { kind: 'too_many_pending'; pending: number };

export type Verdict = 'approve' | 'reject' | 'cancel' | 'expire';

export type TransitionResult =
  | { kind: 'decided'; status: Exclude<ApprovalStatus, 'pending'> }
  | { kind: 'vote_counted'; votes: number }
  | { kind: 'unknown' }
  | { kind: 'already_decided'; status: ApprovalStatus; by: string; name: string; at: number }
  | { kind: 'already_voted'; votes: number }
  | { kind: 'not_due' }
  /** A decision came after the expiry time and expired the approval itself (its effects are still owed). */
  | { kind: 'expired_now' };

export class ApprovalStoreUnavailableError extends Error {
  readonly code = 'countersign.approvals.unavailable';
  constructor(cause: unknown) {
    super(`approval store unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/** A voter's identifiers as approvers-set tokens: compared ignoring case (look-alikes count as the same person). */
export function voterTokens(identifiers: readonly string[]): string[] {
  return [...new Set(identifiers.map((i) => `id:${i.trim().toLowerCase()}`).filter((t) => t !== 'id:'))];
}

async function guarded<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw new ApprovalStoreUnavailableError(error);
  }
}

/** Approval records in Redis. Every status change goes through one Lua script (scripts.ts). */
export class ApprovalStore {
  readonly eventsChannel: string;

  /**
   * @param usedAnswerSeconds after a kept result is handed out, identical calls are told it was delivered for
   * this long before one asks a person again (0: at once).
   */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly usedAnswerSeconds = 0,
  ) {
    this.eventsChannel = `${prefix}approvals:events`;
  }

  private record(id: string): string {
    return `${this.prefix}approval:${id}`;
  }
  private callParts(id: string): string {
    return `${this.prefix}approval:${id}:call`;
  }
  private approvers(id: string): string {
    return `${this.prefix}approval:${id}:approvers`;
  }
  private pendingIndex(): string {
    return `${this.prefix}approvals:pending`;
  }
  private grantIndex(grant: string): string {
    return `${this.prefix}approvals:pending:${grant}`;
  }
  private allIndex(): string {
    return `${this.prefix}approvals:all`;
  }
  private runningIndex(): string {
    return `${this.prefix}approvals:running`;
  }
  private awaitingIndex(): string {
    return `${this.prefix}approvals:awaiting-execution`;
  }
  /** Present while the process with this id is alive (see ExecutionRecovery). */
  livenessKey(processId: string): string {
    return `${this.prefix}process:${processId}`;
  }
  binding(call: BoundCall): string {
    const hash = createHash('sha256')
      .update([call.server, call.tool, call.grant, call.argsSha256].join('\0'))
      .digest('hex');
    return `${this.prefix}approvals:bind:${hash}`;
  }

  async create(input: NewApproval): Promise<CreateResult> {
    const fields = newRecordFields({ ...input, createdAt: input.now });
    if (input.tasked) fields.push('tasked', '1');
    const expiresAt = input.now + input.spec.timeoutSeconds * 1000;
    const reply = (await guarded(() =>
      createScript.run(
        this.redis,
        [
          this.record(input.id),
          this.pendingIndex(),
          this.grantIndex(input.grant),
          this.binding(input),
          this.allIndex(),
          this.callParts(input.id),
        ],
        [
          input.now,
          input.spec.maxPending,
          expiresAt,
          input.id,
          KEEP_AFTER_EXPIRY_SECONDS,
          callPartsJson(input),
          ...fields,
        ],
      ),
    )) as [number, string | number];
    if (reply[0] === 0) return { kind: 'created', id: String(reply[1]) };
    if (reply[0] === 1) return { kind: 'existing', id: String(reply[1]) };
    return { kind: 'too_many_pending', pending: Number(reply[1]) };
  }

  async get(id: string): Promise<ApprovalRecord | undefined> {
    if (!APPROVAL_ID.test(id)) return undefined;
    const replies = await guarded(async () => {
      const results = await this.redis.pipeline().hgetall(this.record(id)).get(this.callParts(id)).exec();
      if (!results) throw new Error('no reply');
      for (const [error] of results) if (error) throw error;
      return results.map(([, value]) => value) as [Record<string, string>, string | null];
    });
    const [hash, call] = replies;
    return Object.keys(hash).length === 0 ? undefined : parseStoredRecord(hash, call);
  }

  /**
   * Just the record's status, or undefined when there is no record: a cheap read (one HGET, no parsing) for
   * waiters that look again and again while a call is pending.
   */
  async status(id: string): Promise<ApprovalRecord['status'] | undefined> {
    if (!APPROVAL_ID.test(id)) return undefined;
    const status = await guarded(() => this.redis.hget(this.record(id), 'status'));
    return status === null ? undefined : (status as ApprovalRecord['status']);
  }

  /**
   * Of `ids`, those whose approval is no longer pending (decided, or its record gone), in a few round trips
   * for any number of ids. Ids that are not approval ids are reported as not pending.
   */
  async notPending(ids: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (let start = 0; start < ids.length; start += NOT_PENDING_BATCH) {
      const valid: string[] = [];
      for (const id of ids.slice(start, start + NOT_PENDING_BATCH))
        (APPROVAL_ID.test(id) ? valid : out).push(id);
      if (valid.length === 0) continue;
      const positions = (await guarded(() =>
        notPendingScript.run(
          this.redis,
          valid.map((id) => this.record(id)),
          [],
        ),
      )) as number[];
      for (const position of positions) {
        const id = valid[position - 1];
        if (id !== undefined) out.push(id);
      }
    }
    return out;
  }

  /** The approval the identical call is bound to (pending, or decided and not yet told), if any. */
  async findBound(call: BoundCall): Promise<ApprovalRecord | undefined> {
    const id = await guarded(() => this.redis.get(this.binding(call)));
    return id ? this.get(id) : undefined;
  }

  async transition(
    id: string,
    verdict: Verdict,
    reviewer: { id: string; name: string },
    reason: string,
    now: number,
    /** Who an approve vote counts for (a person's key, so one person votes once); defaults to reviewer.id. */
    voterKey?: string,
    /** Every other identifier that is, or looks like, the voter's: a later voter sharing one counts no more. */
    voterIdentifiers: readonly string[] = [],
  ): Promise<TransitionResult> {
    const record = await this.get(id);
    if (!record) return { kind: 'unknown' };
    const reply = (await guarded(() =>
      transitionScript.run(
        this.redis,
        [
          this.record(id),
          this.approvers(id),
          this.pendingIndex(),
          this.grantIndex(record.grant),
          this.awaitingIndex(),
          this.binding(record),
        ],
        [
          verdict,
          reviewer.id,
          reviewer.name,
          reason,
          now,
          this.eventsChannel,
          id,
          voterKey ?? reviewer.id,
          ...voterTokens(voterIdentifiers),
        ],
      ),
    )) as (number | string)[];
    switch (Number(reply[0])) {
      case 0:
        return { kind: 'decided', status: reply[1] as Exclude<ApprovalStatus, 'pending'> };
      case 1:
        return { kind: 'vote_counted', votes: Number(reply[1]) };
      case 2:
        return { kind: 'expired_now' };
      case -1:
        return { kind: 'unknown' };
      case -2:
        return {
          kind: 'already_decided',
          status: reply[1] as ApprovalStatus,
          by: String(reply[2]),
          name: String(reply[3]),
          at: Number(reply[4]),
        };
      case -3:
        return { kind: 'already_voted', votes: Number(reply[1]) };
      default:
        return { kind: 'not_due' };
    }
  }

  async claim(id: string, claimant: string, now: number): Promise<boolean> {
    const keys = [this.record(id), this.runningIndex(), this.awaitingIndex()];
    return (await guarded(() => claimScript.run(this.redis, keys, [now, claimant, id]))) === 1;
  }

  /** The claimant is about to send the call upstream: false when the claim is no longer its own. */
  async start(id: string, claimant: string, now: number, admittedAt: number): Promise<boolean> {
    const reply = await guarded(() =>
      startScript.run(this.redis, [this.record(id)], [claimant, now, admittedAt]),
    );
    return reply === 1;
  }

  /** Gives a claim back for a call that never started (see UNCLAIM_SCRIPT). */
  async unclaim(id: string, claimant: string, now: number): Promise<boolean> {
    const keys = [this.record(id), this.runningIndex(), this.awaitingIndex()];
    return (await guarded(() => unclaimScript.run(this.redis, keys, [claimant, now, id]))) === 1;
  }

  /**
   * Marks an execution whose claimant's process is gone as interrupted (see INTERRUPT_SCRIPT); `result` is
   * what the agent's retry or task is told.
   */
  async interrupt(record: ApprovalRecord, claimant: string, now: number, result: string): Promise<boolean> {
    const keys = [
      this.record(record.id),
      this.runningIndex(),
      this.livenessKey(claimant),
      this.binding(record),
    ];
    const args = [claimant, now, result, this.eventsChannel, record.id];
    return (await guarded(() => interruptScript.run(this.redis, keys, args))) === 1;
  }

  /**
   * Lets a task wait for an approval whose outcome is still ahead (see ATTACH_TASK_SCRIPT): `pending`,
   * `approved` (not finished; an unclaimed one joins the awaiting-execution index), or `decided` (too late).
   */
  async attachTask(id: string, now: number): Promise<'pending' | 'approved' | 'decided'> {
    const reply = await guarded(() =>
      attachTaskScript.run(this.redis, [this.record(id), this.awaitingIndex()], [now, id]),
    );
    return reply === 1 ? 'pending' : reply === 2 ? 'approved' : 'decided';
  }

  /**
   * Drops an id from the global pending index (its record is gone). The grant's index drops it by its score
   * (the expiry time) the next time that grant parks a call.
   */
  async forgetPending(id: string): Promise<void> {
    await guarded(() => this.redis.zrem(this.pendingIndex(), id));
  }

  /** Drops an id from the running index (its record is gone). */
  async forgetRunning(id: string): Promise<void> {
    await guarded(() => this.redis.srem(this.runningIndex(), id));
  }

  /** Ids of approved calls marked running (for the interrupted-execution sweep). */
  async running(): Promise<string[]> {
    return guarded(() => this.redis.smembers(this.runningIndex()));
  }

  /** Approved task calls not claimed yet, approved before `before` (for the background worker's sweep). */
  async awaitingExecution(before: number): Promise<string[]> {
    return guarded(() => this.redis.zrangebyscore(this.awaitingIndex(), '-inf', before, 'LIMIT', 0, 1000));
  }

  /** Drops an id from the awaiting index (its record is gone or can no longer run). */
  async forgetAwaiting(id: string): Promise<void> {
    await guarded(() => this.redis.zrem(this.awaitingIndex(), id));
  }

  /** Marks this process alive for `ttlMs` (its executions are not orphans while the key exists). */
  async heartbeat(processId: string, ttlMs: number): Promise<void> {
    await guarded(() => this.redis.set(this.livenessKey(processId), '1', 'PX', ttlMs));
  }

  async dropHeartbeat(processId: string): Promise<void> {
    await guarded(() => this.redis.del(this.livenessKey(processId)));
  }

  /** Records the end of an execution; false when `claimant` no longer holds it (see FINISH_SCRIPT). */
  async finish(
    record: ApprovalRecord,
    claimant: string,
    execution: 'done' | 'interrupted',
    outcome: string,
    now: number,
    result: string | undefined,
    deliveredToWaiter: boolean,
  ): Promise<boolean> {
    const reply = await guarded(() =>
      finishScript.run(
        this.redis,
        [this.record(record.id), this.binding(record), this.runningIndex()],
        [
          execution,
          outcome,
          now,
          result ?? '',
          deliveredToWaiter ? '1' : '0',
          this.eventsChannel,
          record.id,
          claimant,
        ],
      ),
    );
    return reply === 1;
  }

  /**
   * What the approvers set holds: each voter's person key and their identifiers as `id:` tokens (see
   * voterTokens), to tell whether a reviewer entry was used by someone who voted.
   */
  async approverTokens(id: string): Promise<Set<string>> {
    return new Set(await guarded(() => this.redis.smembers(this.approvers(id))));
  }

  /**
   * A task claims the approval's result (single use across tasks, see OWN_RESULT_SCRIPT): the id of the task
   * that owns it, or undefined when the approval is gone.
   */
  async ownResult(id: string, taskId: string): Promise<string | undefined> {
    const reply = await guarded(() => ownResultScript.run(this.redis, [this.record(id)], [taskId]));
    return typeof reply === 'string' && reply !== '' ? reply : undefined;
  }

  /** The kept result for the agent's retry, once; undefined when there is none. */
  async take(record: ApprovalRecord): Promise<string | undefined> {
    const reply = await guarded(() =>
      takeScript.run(
        this.redis,
        [this.record(record.id), this.binding(record)],
        [record.id, this.usedAnswerSeconds],
      ),
    );
    return typeof reply === 'string' ? reply : undefined;
  }

  async unbind(record: ApprovalRecord): Promise<void> {
    await guarded(() => unbindScript.run(this.redis, [this.binding(record)], [record.id]));
  }

  async setSlackMessage(id: string, channel: string, ts: string): Promise<void> {
    await guarded(() => this.redis.hset(this.record(id), 'slackChannel', channel, 'slackTs', ts));
  }

  /** Newest first. `status` filters; records past their retention are dropped from the index as found. */
  async list(options: { status?: ApprovalStatus; limit: number }): Promise<ApprovalRecord[]> {
    const ids = await guarded(() =>
      this.redis.zrevrange(this.allIndex(), 0, Math.max(options.limit * 4, 200)),
    );
    const records: ApprovalRecord[] = [];
    const gone: string[] = [];
    for (const id of ids) {
      const record = await this.get(id);
      if (!record) {
        gone.push(id);
        continue;
      }
      if (options.status && record.status !== options.status) continue;
      records.push(record);
      if (records.length >= options.limit) break;
    }
    if (gone.length) await guarded(() => this.redis.zrem(this.allIndex(), ...gone));
    return records;
  }

  /** Pending approvals whose expiry time has passed (for the expiry sweep at start). */
  async overdue(now: number): Promise<string[]> {
    return guarded(() => this.redis.zrangebyscore(this.pendingIndex(), '-inf', now, 'LIMIT', 0, 500));
  }

  async pendingCount(): Promise<number> {
    return guarded(() => this.redis.zcard(this.pendingIndex()));
  }
}
