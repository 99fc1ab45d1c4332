import { createHash } from 'node:crypto';
import { canonicalize } from './canonical.js';

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
  return redact(args, 0);
}

function redact(value: unknown, depth: number): unknown {
  if (value === null || typeof value === 'boolean' || value === undefined) return value;
  if (typeof value !== 'object') return REDACTED;
  if (depth >= MAX_REDACT_DEPTH) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (item !== undefined) out[key] = redact(item, depth + 1);
  }
  return out;
}
