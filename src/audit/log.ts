import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { LuaScript } from '../redis/script.js';
import { GENESIS, canonicalEvent, linkHash, wellFormed } from './chain.js';
import { AuditError, auditUnavailable } from './errors.js';
import { boundedEvent } from './event-bounds.js';
import { auditEventSchema } from './event.js';
import type { AuditEvent } from './event.js';
import { APPEND_HEAD_MOVED, APPEND_OK, APPEND_SCRIPT, appendFailureMessage } from './scripts.js';
import { readStream } from './stream.js';
import { verifyChain } from './verify.js';
import type { AuditKeys, VerifyResult } from './verify.js';

const appendScript = new LuaScript(APPEND_SCRIPT);

/** Attempts per batch when other processes keep moving the head. */
const MAX_APPEND_ATTEMPTS = 20;
/** Events per script call; more wait for the next round trip. */
const MAX_BATCH = 256;
/** Stream ids are Redis's clock, event times the gateway's: start reading this much before `since`. */
const CLOCK_SKEW_MS = 5 * 60_000;
const DEFAULT_QUERY_LIMIT = 100;

export interface AuditLogger {
  error(obj: object, msg: string): void;
}

export interface AuditLogOptions {
  redis: Redis;
  /** Key prefix, e.g. 'cs:' → stream `cs:audit`, head `cs:audit:head`. */
  prefix: string;
  /** Also append every written event to this JSON Lines file (this process's events only). */
  jsonlPath?: string;
  logger?: AuditLogger;
  /** Entries per XRANGE page in query() and verify(). */
  pageSize?: number;
}

export interface AuditQuery {
  since?: Date;
  grant?: string;
  tool?: string;
  decision?: AuditEvent['decision'];
  type?: AuditEvent['type'];
  /** At most this many events (default 100). */
  limit?: number;
}

interface PendingAppend {
  json: string;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** Canonical JSON of an event; lone surrogates (a client's tool name or arguments) become U+FFFD, not a lost event. */
function encodeEvent(event: AuditEvent): string {
  try {
    return canonicalEvent(event);
  } catch {
    return canonicalEvent(wellFormed(event));
  }
}

const stderrLogger: AuditLogger = {
  error: (obj, msg) => console.error(msg, obj),
};

/**
 * The audit trail: a hash-chained Redis stream shared by every gateway process on one Redis. This class
 * is the only code that touches the stream. It does not own the Redis connection (close() leaves it open).
 */
export class AuditLog {
  readonly keys: AuditKeys;
  private readonly redis: Redis;
  private readonly jsonlPath: string | undefined;
  private readonly logger: AuditLogger;
  private readonly pageSize: number;
  private queue: PendingAppend[] = [];
  private flushing: Promise<void> | null = null;
  /** Last head this process saw; a stale value only costs one retry. */
  private head = GENESIS;
  private mirrorWrites: Promise<void> = Promise.resolve();
  private mirrorDirReady = false;
  private closed = false;

  constructor(opts: AuditLogOptions) {
    this.redis = opts.redis;
    this.keys = { stream: `${opts.prefix}audit`, head: `${opts.prefix}audit:head` };
    this.jsonlPath = opts.jsonlPath;
    this.logger = opts.logger ?? stderrLogger;
    this.pageSize = opts.pageSize ?? 500;
  }

  /**
   * Resolves once the event is in the stream, chained onto the one before. Calls made while a write is in
   * flight go together, in call order, in the next round trip. Rejects with an AuditError: code
   * 'countersign.audit.unavailable' when Redis cannot be reached (callers fail closed).
   */
  append(event: AuditEvent): Promise<void> {
    if (this.closed)
      return Promise.reject(new AuditError('countersign.audit.closed', 'the audit log is closed'));
    const checked = auditEventSchema.safeParse(event);
    if (!checked.success) {
      const issues = checked.error.issues.map(
        (issue) => `${issue.path.join('.') || '(event)'}: ${issue.message}`,
      );
      return Promise.reject(
        new AuditError('countersign.audit.invalid_event', `invalid audit event: ${issues.join('; ')}`),
      );
    }
    let json: string;
    try {
      // Nothing an agent controls decides an event's size (see event-bounds.ts).
      json = encodeEvent(boundedEvent(event));
    } catch (error) {
      return Promise.reject(
        new AuditError(
          'countersign.audit.invalid_event',
          `invalid audit event: ${(error as Error).message}`,
          { cause: error },
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ json, resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  /** Waits for every pending write (and mirror line); later appends are refused. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flushing;
    await this.mirrorWrites;
  }

  /** Writes queued appends until none are left; at most one flush runs at a time. */
  private async flush(): Promise<void> {
    // Yield once, so appends made in the same tick join the first batch (and `flushing` is set before
    // the finally below can clear it).
    await Promise.resolve();
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_BATCH);
        try {
          await this.writeBatch(batch);
        } catch (error) {
          batch.forEach((item) => item.reject(auditUnavailable(error)));
        }
      }
    } finally {
      this.flushing = null;
    }
  }

  private async writeBatch(batch: PendingAppend[]): Promise<void> {
    const fail = (error: Error): void => batch.forEach((item) => item.reject(error));
    let expected = this.head;
    for (let attempt = 1; attempt <= MAX_APPEND_ATTEMPTS; attempt++) {
      const hashes: string[] = [];
      const args: string[] = [GENESIS, expected];
      let prev = expected;
      for (const item of batch) {
        prev = linkHash(prev, item.json);
        hashes.push(prev);
        args.push(item.json, prev);
      }
      let reply: unknown;
      try {
        reply = await appendScript.run(this.redis, [this.keys.stream, this.keys.head], args);
      } catch (error) {
        return fail(auditUnavailable(error));
      }
      const [code, detail] = reply as [number, string];
      if (code === APPEND_OK) {
        this.head = detail;
        this.mirror(batch, expected, hashes);
        batch.forEach((item) => item.resolve());
        return;
      }
      if (code !== APPEND_HEAD_MOVED) {
        return fail(
          new AuditError('countersign.audit.chain_broken', appendFailureMessage(code, detail, this.keys)),
        );
      }
      expected = detail;
      this.head = detail;
    }
    fail(
      new AuditError(
        'countersign.audit.contended',
        appendFailureMessage(APPEND_HEAD_MOVED, expected, this.keys),
      ),
    );
  }

  /** Appends the written batch to the JSONL file, in write order, without holding up the next Redis write. */
  private mirror(batch: PendingAppend[], prev: string, hashes: string[]): void {
    const file = this.jsonlPath;
    if (!file) return;
    const lines = batch
      .map(
        (item, i) =>
          `{"event":${item.json},"hash":"${hashes[i]}","prev":"${i === 0 ? prev : hashes[i - 1]}"}\n`,
      )
      .join('');
    this.mirrorWrites = this.mirrorWrites.then(async () => {
      try {
        if (!this.mirrorDirReady) {
          await mkdir(path.dirname(file), { recursive: true });
          this.mirrorDirReady = true;
        }
        await appendFile(file, lines, 'utf8');
      } catch (error) {
        this.logger.error(
          { err: (error as Error).message, file, events: batch.length },
          'audit JSONL mirror write failed; the events are in Redis but missing from the file',
        );
      }
    });
  }

  /**
   * Events matching every given filter, oldest first. With `since`, the first `limit` events from then on;
   * without it, the latest `limit` events. Reads the stream page by page; entries that do not parse are
   * skipped and logged (verify() reports them).
   */
  async query(filter: AuditQuery = {}): Promise<AuditEvent[]> {
    const limit = filter.limit ?? DEFAULT_QUERY_LIMIT;
    const sinceMs = filter.since?.getTime();
    const found: AuditEvent[] = [];
    const entries =
      sinceMs === undefined
        ? readStream(this.redis, this.keys.stream, { reverse: true, pageSize: this.pageSize })
        : readStream(this.redis, this.keys.stream, {
            start: String(Math.max(0, sinceMs - CLOCK_SKEW_MS)),
            pageSize: this.pageSize,
          });
    for await (const entry of entries) {
      if (found.length >= limit) break;
      const event = this.parseEntry(entry.id, entry.fields.e);
      if (!event) continue;
      if (sinceMs !== undefined && Date.parse(event.time) < sinceMs) continue;
      if (filter.grant !== undefined && event.grant !== filter.grant) continue;
      if (filter.tool !== undefined && event.tool !== filter.tool) continue;
      if (filter.decision !== undefined && event.decision !== filter.decision) continue;
      if (filter.type !== undefined && event.type !== filter.type) continue;
      found.push(event);
    }
    return sinceMs === undefined ? found.reverse() : found;
  }

  /** Walks the whole chain in order; see verifyChain. */
  verify(): Promise<VerifyResult> {
    return verifyChain(this.redis, this.keys, this.pageSize);
  }

  private parseEntry(id: string, json: string | undefined): AuditEvent | null {
    try {
      const parsed = auditEventSchema.safeParse(JSON.parse(json ?? ''));
      if (parsed.success) return parsed.data;
    } catch {
      // reported below
    }
    this.logger.error(
      { streamId: id, stream: this.keys.stream },
      'audit entry is not a valid event; skipped',
    );
    return null;
  }
}
