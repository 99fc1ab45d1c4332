import type { Redis } from 'ioredis';
import { auditUnavailable } from './errors.js';

/** One entry of the audit stream as stored: `e` canonical event JSON, `h` its hash, `p` the previous hash. */
export interface StreamEntry {
  id: string;
  fields: Record<string, string>;
}

/**
 * Reads a stream page by page (COUNT `pageSize` each) so a huge trail is never loaded at once.
 * Forward from `start` (an XRANGE id, '(' for exclusive) or, with `reverse`, backward from the newest entry.
 */
export async function* readStream(
  redis: Redis,
  key: string,
  options: { start?: string; reverse?: boolean; pageSize: number },
): AsyncGenerator<StreamEntry> {
  let cursor = options.reverse ? '+' : (options.start ?? '-');
  for (;;) {
    let page: [string, string[]][];
    try {
      page = options.reverse
        ? await redis.xrevrange(key, cursor, '-', 'COUNT', options.pageSize)
        : await redis.xrange(key, cursor, '+', 'COUNT', options.pageSize);
    } catch (error) {
      throw auditUnavailable(error);
    }
    for (const [id, flat] of page) yield { id, fields: toFields(flat) };
    const last = page[page.length - 1];
    if (!last || page.length < options.pageSize) return;
    cursor = `(${last[0]}`;
  }
}

function toFields(flat: string[]): Record<string, string> {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
  return fields;
}
