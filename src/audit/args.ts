import { createHash } from 'node:crypto';
import { canonicalize } from './canonical.js';
import { wellFormed } from './chain.js';

export const REDACTED = '[redacted]';

/** Nesting deeper than this is redacted wholesale (and keeps redaction from recursing without bound). */
const MAX_REDACT_DEPTH = 32;

export class ArgumentsNotCanonicalError extends Error {
  readonly code = 'countersign.audit.arguments_not_canonical';
  constructor(cause: unknown) {
    super(
      `the arguments cannot be written as canonical JSON (RFC 8785): ${(cause as Error)?.message ?? String(cause)}`,
      {
        cause,
      },
    );
  }
}

/**
 * RFC 8785 canonical JSON of a value. `undefined` (no arguments at all) is written as `null`.
 * Throws ArgumentsNotCanonicalError for what RFC 8785 cannot represent: lone UTF-16 surrogates, NaN,
 * Infinity, cycles.
 */
export function canonicalJson(value: unknown): string {
  try {
    return canonicalize(value) ?? 'null';
  } catch (error) {
    throw new ArgumentsNotCanonicalError(error);
  }
}

/** Hex SHA-256 of the canonical JSON of the arguments: equal for equal arguments, whatever their key order. */
export function hashArguments(args: unknown): string {
  return createHash('sha256').update(canonicalJson(args), 'utf8').digest('hex');
}

/**
 * The arguments' shape without their values: object keys, array lengths, booleans and nulls are kept;
 * every string and number becomes "[redacted]". Keys are kept on purpose (they name parameters); a tool
 * that takes secrets as object keys should be audited with hashes only.
 */
export function redactArguments(args: unknown): unknown {
  return JSON.parse(redactedShapeJson(args, Number.POSITIVE_INFINITY).text);
}

/**
 * The most the arguments part of one audit event (`args` or `argsRedacted`) weighs, as UTF-8 bytes of its
 * canonical JSON. Beyond it the event keeps a TruncatedArguments instead: an agent's argument size must
 * not decide an event's size (a refused call with huge arguments would otherwise write a huge event).
 */
export const MAX_AUDIT_ARGUMENTS_BYTES = 8192;
/** How many characters of the redacted shape (or of the kept JSON) a truncated event keeps as a preview. */
export const AUDIT_ARGUMENTS_PREVIEW_CHARS = 1024;

/**
 * What an event keeps of arguments too big for it. `bytes` is the UTF-8 size of the arguments' canonical
 * JSON; `argsSha256` (in every event) still identifies them exactly, and while a call waits for a person
 * its approval record holds them whole.
 */
export interface TruncatedArguments {
  truncated: true;
  bytes: number;
  preview: string;
}

/**
 * The arguments part of an audit event: the arguments themselves when kept, else their redacted shape —
 * either one replaced by a TruncatedArguments beyond MAX_AUDIT_ARGUMENTS_BYTES.
 */
export function auditedArguments(args: unknown, keepArguments: true): { args: unknown };
export function auditedArguments(args: unknown, keepArguments: false): { argsRedacted: unknown };
export function auditedArguments(
  args: unknown,
  keepArguments: boolean,
): { args: unknown } | { argsRedacted: unknown };
export function auditedArguments(
  args: unknown,
  keepArguments: boolean,
): { args: unknown } | { argsRedacted: unknown } {
  if (!keepArguments) {
    const shape = redactedShapeJson(args, MAX_AUDIT_ARGUMENTS_BYTES);
    return {
      argsRedacted: shape.complete ? JSON.parse(shape.text) : truncated(args, shape.text),
    };
  }
  const json = jsonOf(args);
  return {
    args: utf8Bytes(json) <= MAX_AUDIT_ARGUMENTS_BYTES ? args : truncated(args, json, json),
  };
}

function truncated(args: unknown, previewSource: string, argsJson?: string): TruncatedArguments {
  return {
    truncated: true,
    bytes: utf8Bytes(argsJson ?? jsonOf(args)),
    preview: wellFormed(cutAtChar(previewSource, AUDIT_ARGUMENTS_PREVIEW_CHARS)),
  };
}

/** Canonical JSON when the arguments have one; else plain JSON (they are refused, but still audited). */
function jsonOf(args: unknown): string {
  try {
    return canonicalJson(args);
  } catch {
    return JSON.stringify(args) ?? 'null';
  }
}

function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** At most `max` UTF-16 units, never ending in half a surrogate pair. */
function cutAtChar(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

/** Thrown inside the walk when the budget is spent: the walk stops there. */
class BudgetSpent extends Error {}

/**
 * The JSON of the arguments' redacted shape, written token by token and abandoned as soon as it passes `maxBytes`: the work is bounded by the budget, not by
 * the arguments (an array of 200,000 one-character strings stops after a few hundred elements). Keys are
 * made well-formed (a lone surrogate becomes U+FFFD) so the event can always be written.
 */
export function redactedShapeJson(args: unknown, maxBytes: number): { complete: boolean; text: string } {
  const chunks: string[] = [];
  let bytes = 0;
  const emit = (text: string): void => {
    chunks.push(text);
    bytes += utf8Bytes(text);
    if (bytes > maxBytes) throw new BudgetSpent();
  };
  const quotedKey = (key: string): string =>
    // A key longer than the budget cannot fit: quoting only its start keeps the work bounded too.
    JSON.stringify(wellFormed(key.length > maxBytes ? cutAtChar(key, maxBytes + 1) : key));
  const walk = (value: unknown, depth: number): void => {
    if (value === null || value === undefined) return emit('null');
    if (typeof value === 'boolean') return emit(value ? 'true' : 'false');
    if (typeof value !== 'object' || depth >= MAX_REDACT_DEPTH) return emit(REDACTED_JSON);
    if (Array.isArray(value)) {
      emit('[');
      for (let i = 0; i < value.length; i++) {
        if (i > 0) emit(',');
        walk(value[i], depth + 1);
      }
      return emit(']');
    }
    emit('{');
    let first = true;
    // Own keys in their own order (the event is canonicalized when written); for-in lets the walk stop early.
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue;
      const item = (value as Record<string, unknown>)[key];
      if (item === undefined) continue;
      if (!first) emit(',');
      first = false;
      emit(`${quotedKey(key)}:`);
      walk(item, depth + 1);
    }
    return emit('}');
  };
  try {
    walk(args, 0);
    return { complete: true, text: chunks.join('') };
  } catch (error) {
    if (!(error instanceof BudgetSpent)) throw error;
    return { complete: false, text: chunks.join('') };
  }
}

const REDACTED_JSON = JSON.stringify(REDACTED);
