/**
 * MCP tasks in Redis: what an agent's task-augmented `tools/call` left behind, so that any gateway process,
 * after any restart, can answer `tasks/get`, `tasks/result`, `tasks/list` and `tasks/cancel` for it.
 *
 * A task is bound to the grant that created it (any other grant is told "not found"), has a random id, and
 * its key expires with its ttl. Three kinds:
 *   approval — waits for an approval; its state and result are read from the approval record;
 *   settled  — the call was answered at once (refused, or allowed and run): the result is stored here;
 *   upstream — the upstream server made the task; requests about it go to that server, on the session that
 *              created it.
 * Keys: `<p>task:<id>` (hash) and `<p>tasks:grant:<grant>` (sorted by creation, for tasks/list).
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';

export const TASK_STATUSES = ['working', 'input_required', 'completed', 'failed', 'cancelled'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export interface TaskRecord {
  id: string;
  kind: 'approval' | 'settled' | 'upstream';
  grant: string;
  session: string;
  createdAt: number;
  lastUpdatedAt: number;
  /** Milliseconds from creation until the task (and its result) may be deleted. */
  ttl: number;
  pollInterval: number;
  approvalId?: string;
  server?: string;
  upstreamTaskId?: string;
  /** Settled tasks: the final status and result; upstream tasks: the last status seen. */
  status?: TaskStatus;
  statusMessage?: string;
  /** JSON of the CallToolResult (settled tasks). */
  result?: string;
  /** Set when the agent cancelled the task (tasks/cancel): it stays cancelled whatever happens next. */
  cancelledAt?: number;
  cancelMessage?: string;
}

export class TaskStoreUnavailableError extends Error {
  readonly code = 'countersign.tasks.unavailable';
  constructor(cause: unknown) {
    super(`task store unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

async function guarded<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw new TaskStoreUnavailableError(error);
  }
}

const num = z.coerce.number();
const optionalNumber = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v === '' ? undefined : Number(v)));

/** Stored data is still input: a hash that does not parse is treated as no task. */
const storedSchema = z.object({
  id: z.string(),
  kind: z.enum(['approval', 'settled', 'upstream']),
  grant: z.string(),
  session: z.string(),
  createdAt: num,
  lastUpdatedAt: num,
  ttl: num,
  pollInterval: num,
  approvalId: z.string().optional(),
  server: z.string().optional(),
  upstreamTaskId: z.string().optional(),
  status: z.enum(TASK_STATUSES).optional(),
  statusMessage: z.string().optional(),
  result: z.string().optional(),
  cancelledAt: optionalNumber,
  cancelMessage: z.string().optional(),
});

function fields(record: TaskRecord): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (value !== undefined) out.push(key, String(value));
  }
  return out;
}

export type NewTask = Omit<TaskRecord, 'id' | 'lastUpdatedAt'>;

/** A position in a grant's task list: a task's creation time and id. */
export interface TaskCursor {
  at: number;
  id: string;
}

/** Task ids are random (122 bits): knowing one task's id tells nothing about another's. */
const TASK_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class TaskStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private key(id: string): string {
    return `${this.prefix}task:${id}`;
  }
  private grantIndex(grant: string): string {
    return `${this.prefix}tasks:grant:${grant}`;
  }

  async create(input: NewTask): Promise<TaskRecord> {
    const record: TaskRecord = { ...input, id: randomUUID(), lastUpdatedAt: input.createdAt };
    const expiresAt = record.createdAt + record.ttl;
    await guarded(() =>
      this.redis
        .multi()
        .hset(this.key(record.id), ...fields(record))
        .pexpireat(this.key(record.id), expiresAt)
        .zadd(this.grantIndex(record.grant), record.createdAt, record.id)
        .zremrangebyscore(this.grantIndex(record.grant), '-inf', record.createdAt - 7 * 24 * 3600_000)
        .exec(),
    );
    return record;
  }

  /** The task, if it exists and belongs to `grant` (another grant's task is "not found"). */
  async get(id: string, grant: string): Promise<TaskRecord | undefined> {
    if (!TASK_ID.test(id)) return undefined;
    const hash = await guarded(() => this.redis.hgetall(this.key(id)));
    if (Object.keys(hash).length === 0) return undefined;
    const parsed = storedSchema.safeParse(hash);
    if (!parsed.success || parsed.data.grant !== grant) return undefined;
    const record = { ...parsed.data } as TaskRecord;
    for (const key of Object.keys(record) as (keyof TaskRecord)[]) {
      if (record[key] === undefined) delete record[key];
    }
    return record;
  }

  async update(
    id: string,
    change: Partial<
      Pick<TaskRecord, 'status' | 'statusMessage' | 'result' | 'cancelledAt' | 'cancelMessage'>
    >,
    now: number,
  ): Promise<void> {
    const values = fields({ ...change, lastUpdatedAt: now } as TaskRecord);
    // Only an existing task is updated (HSET on an expired key would bring it back without a ttl).
    await guarded(() =>
      this.redis.eval(
        "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], unpack(ARGV)) end return 0",
        1,
        this.key(id),
        ...values,
      ),
    );
  }

  /**
   * The grant's tasks, newest first (by creation time, then id), starting after `after`; ids whose task
   * expired are dropped from the index as they are met. `next` is where the following page starts.
   */
  async list(
    grant: string,
    after: TaskCursor | undefined,
    limit: number,
  ): Promise<{ tasks: TaskRecord[]; next?: TaskCursor }> {
    const tasks: TaskRecord[] = [];
    let position = after;
    for (;;) {
      const max = position ? String(position.at) : '+inf';
      const raw = await guarded(() =>
        this.redis.zrevrangebyscore(
          this.grantIndex(grant),
          max,
          '-inf',
          'WITHSCORES',
          'LIMIT',
          0,
          limit + 64,
        ),
      );
      const entries: TaskCursor[] = [];
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const entry = { id: raw[i] ?? '', at: Number(raw[i + 1]) };
        // Equal times come in descending id order: skip what the previous page already had.
        if (position && entry.at === position.at && entry.id >= position.id) continue;
        entries.push(entry);
      }
      if (entries.length === 0) return { tasks };
      const gone: string[] = [];
      for (const entry of entries) {
        const task = await this.get(entry.id, grant);
        if (!task) {
          gone.push(entry.id);
          continue;
        }
        if (tasks.length === limit) return { tasks, next: position };
        tasks.push(task);
        position = entry;
      }
      if (gone.length) await guarded(() => this.redis.zrem(this.grantIndex(grant), ...gone));
      position = entries[entries.length - 1];
      if (raw.length / 2 < limit + 64) return { tasks };
    }
  }
}
