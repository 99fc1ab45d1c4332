import { MAX_AUDIT_ARGUMENTS_BYTES, auditedArguments } from './args.js';
import type { AuditEvent } from './event.js';

/** Free text in an event (a refusal message, an upstream error) is cut to this many characters. */
export const MAX_EVENT_TEXT_CHARS = 2048;
/** Names in an event (tool, reviewer, grant, …) are cut to this many characters. */
export const MAX_EVENT_NAME_CHARS = 256;
/**
 * What one event weighs at most, serialized: bounded names and texts (escapes of a hostile string at most
 * sextuple a character), bounded arguments, and counters the gateway made.
 */
export const MAX_EVENT_BYTES = 64 * 1024;

const TEXT_FIELDS = ['message', 'error'] as const;
const NAME_FIELDS = [
  'grant',
  'owner',
  'session',
  'server',
  'tool',
  'reason',
  'rule',
  'reviewer',
  'approvalId',
  'method',
] as const;

/** `text` cut to at most `max` characters, saying how long it was; never ends in half a surrogate pair. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = `…(${text.length} chars)`;
  let keep = Math.max(0, max - marker.length);
  const last = text.charCodeAt(keep - 1);
  if (last >= 0xd800 && last <= 0xdbff) keep -= 1;
  return `${text.slice(0, keep)}${marker}`;
}

/**
 * The event with every part an agent (or an upstream, or a reviewer's display name) controls bounded in size,
 * so no event outgrows MAX_EVENT_BYTES whatever it quotes. Events already within the bounds come back
 * unchanged (the same object). Applied where events are written (AuditLog, AuditSpool) as the last guard;
 * the gateway already bounds arguments when it builds an event, without walking them whole.
 */
export function boundedEvent(event: AuditEvent): AuditEvent {
  let out: AuditEvent | undefined;
  const set = <K extends keyof AuditEvent>(key: K, value: AuditEvent[K]): void => {
    out ??= { ...event };
    out[key] = value;
  };
  for (const key of TEXT_FIELDS) {
    const value = event[key];
    if (typeof value === 'string' && value.length > MAX_EVENT_TEXT_CHARS)
      set(key, cutText(value, MAX_EVENT_TEXT_CHARS));
  }
  for (const key of NAME_FIELDS) {
    const value = event[key];
    if (typeof value === 'string' && value.length > MAX_EVENT_NAME_CHARS)
      set(key, cutText(value, MAX_EVENT_NAME_CHARS));
  }
  if (event.args !== undefined && !fitsArgumentsBound(event.args))
    set('args', auditedArguments(event.args, true).args);
  if (event.argsRedacted !== undefined && !fitsArgumentsBound(event.argsRedacted))
    // Already a shape without values: bounded like kept arguments (its own JSON is the preview).
    set('argsRedacted', auditedArguments(event.argsRedacted, true).args);
  return out ?? event;
}

function fitsArgumentsBound(value: unknown): boolean {
  const json = JSON.stringify(value) ?? 'null';
  // A cheap upper bound first: 3 UTF-8 bytes per UTF-16 unit at most.
  return (
    json.length * 3 <= MAX_AUDIT_ARGUMENTS_BYTES ||
    Buffer.byteLength(json, 'utf8') <= MAX_AUDIT_ARGUMENTS_BYTES
  );
}
