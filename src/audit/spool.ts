import { appendFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AuditError } from './errors.js';
import type { AuditEvent } from './event.js';
import { boundedEvent } from './event-bounds.js';
import type { AuditLog } from './log.js';

export interface SpoolLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

const RETRY_MS = 1000;
/** Append failures that spool the event: Redis unreachable, or the log already closed (shutdown). */
const SPOOLED = new Set(['countersign.audit.unavailable', 'countersign.audit.closed']);

/**
 * Audit events that must not be lost although writing them failed because Redis was unreachable:
 * refusals made while it was down, and results of calls that were in flight when it went — or because
 * this process had already closed its audit log (a call that outlived the shutdown grace period). They are kept
 * in order in a local JSON Lines file and appended to the trail once Redis answers again — by this
 * process, or by the next one started on the same data folder. (Decisions that allow a call are never
 * spooled: such a call is refused when its decision cannot be written.)
 *
 * A process killed in the middle of re-appending may append some events twice (same event id); none is lost.
 */
export class AuditSpool {
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  private fileWrites: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly log: AuditLog,
    private readonly file: string,
    private readonly logger: SpoolLogger,
  ) {}

  /** Events waiting in the spool. */
  get size(): number {
    return this.pending;
  }

  /** Appends an event to the trail, or spools it when Redis cannot be reached. Other failures reject. */
  async write(unbounded: AuditEvent): Promise<void> {
    // Bounded before it is spooled too: a local file must not fill up while Redis is away.
    const event = boundedEvent(unbounded);
    if (this.pending === 0) {
      try {
        await this.log.append(event);
        return;
      } catch (error) {
        if (!(error instanceof AuditError) || !SPOOLED.has(error.code)) throw error;
      }
    }
    await this.spool(event);
  }

  private async spool(event: AuditEvent): Promise<void> {
    this.pending += 1;
    const line = `${JSON.stringify(event)}\n`;
    this.fileWrites = this.fileWrites.then(async () => {
      await mkdir(path.dirname(this.file), { recursive: true });
      await appendFile(this.file, line, 'utf8');
    });
    await this.fileWrites;
    if (this.pending === 1)
      this.logger.warn(
        { file: this.file },
        'audit trail unavailable (Redis unreachable, or this process is stopping): spooling events locally; they are appended once Redis answers, here or by the next process',
      );
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.drain();
    }, RETRY_MS);
    this.timer.unref();
  }

  /** Re-appends spooled events in order (also those left by an earlier process); keeps the rest on failure. */
  drain(): Promise<void> {
    this.draining ??= (async () => {
      // Events spooled while a round was being appended are taken by the next round.
      while ((await this.drainOnce()) > 0 && this.pending > 0);
    })().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  /** One round: returns how many events it appended (0 when the spool was empty or Redis failed). */
  private async drainOnce(): Promise<number> {
    await this.fileWrites;
    const taken = `${this.file}.draining`;
    // A leftover .draining file means an earlier drain died half-way: finish it first.
    let lines = (await readFile(taken, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    try {
      await rename(this.file, `${taken}.next`);
      lines = lines.concat((await readFile(`${taken}.next`, 'utf8')).split('\n').filter(Boolean));
      await writeFile(taken, lines.map((l) => `${l}\n`).join(''));
      await rm(`${taken}.next`, { force: true });
    } catch {
      // no spool file: nothing new
    }
    if (lines.length === 0) return 0;
    let written = 0;
    try {
      for (const line of lines) {
        await this.log.append(JSON.parse(line) as AuditEvent);
        written += 1;
      }
    } catch (error) {
      // Keep what was not written, ahead of anything spooled meanwhile.
      const rest = lines.slice(written);
      this.fileWrites = this.fileWrites.then(async () => {
        const newer = await readFile(this.file, 'utf8').catch(() => '');
        await writeFile(this.file, rest.map((l) => `${l}\n`).join('') + newer);
      });
      await this.fileWrites;
      await rm(taken, { force: true });
      this.pending = Math.max(this.pending - written, rest.length);
      if (!(error instanceof AuditError) || error.code !== 'countersign.audit.unavailable') {
        this.logger.error(
          { err: (error as Error).message, file: this.file },
          'a spooled audit event could not be appended',
        );
      }
      this.schedule();
      return 0;
    }
    await rm(taken, { force: true });
    this.pending = Math.max(0, this.pending - written);
    this.logger.info({ events: written }, 'spooled audit events appended to the trail');
    return written;
  }

  /** Tries once more to empty the spool; what is left stays on disk for the next process. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.drain().catch(() => undefined);
  }
}
