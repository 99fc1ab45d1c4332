import { createHash } from 'node:crypto';
import { canonicalize } from './canonical.js';
import type { AuditEvent } from './event.js';

/** The "previous hash" of the first event in a trail. */
export const GENESIS = '0'.repeat(64);

/** RFC 8785 canonical JSON of an event: the exact text that is hashed and stored. */
export function canonicalEvent(event: AuditEvent): string {
  const text = canonicalize(event);
  if (text === undefined) throw new Error('an audit event must be a JSON object');
  return text;
}

/** Hex SHA-256 of `prevHash + "\n" + canonicalEventJson`: one link of the chain. */
export function linkHash(prevHash: string, canonicalEventJson: string): string {
  return createHash('sha256').update(`${prevHash}\n${canonicalEventJson}`, 'utf8').digest('hex');
}

/** The hash of `event` chained after the event whose hash is `prevHash` (GENESIS for the first). */
export function eventHash(prevHash: string, event: AuditEvent): string {
  return linkHash(prevHash, canonicalEvent(event));
}

/** Replaces lone UTF-16 surrogates (which RFC 8785 cannot encode) with U+FFFD in every string of a value. */
export function wellFormed<T>(value: T): T {
  return fix(value) as T;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function fix(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(LONE_SURROGATE, '\uFFFD');
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(fix);
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[fix(key) as string] = fix(item);
  return out;
}
