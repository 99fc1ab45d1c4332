/**
 * RFC 8785 (JSON Canonicalization Scheme) text of a JSON value: object keys sorted by UTF-16 code units,
 * numbers and strings as ECMAScript's JSON.stringify writes them. NaN, Infinity and strings with a lone
 * UTF-16 surrogate cannot be written and throw; so does a cycle.
 *
 * Same output and errors as the `canonicalize` package (a property test holds them equal), without its
 * per-character surrogate scan in JavaScript: every audit event is canonicalized to be hashed, so this is on
 * every call's path.
 */

interface WellFormedString {
  isWellFormed(): boolean;
}

/** Undefined for a value JSON cannot hold at top level (undefined, a function, a symbol). */
export function canonicalize(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return write(value, new Set());
  // Fast path: a copy with every object's keys inserted in sorted order, written by one native
  // JSON.stringify. It gives up (undefined) where insertion order would not hold or where JSON.stringify
  // would write what RFC 8785 refuses; the walk below then writes it piece by piece.
  const sorted = sortedCopy(value, 0);
  return sorted === GIVE_UP ? write(value, new Set()) : JSON.stringify(sorted);
}

const GIVE_UP = Symbol('give up');
/** Deeper than this, the piece-by-piece walk decides (it also detects cycles). */
const FAST_DEPTH = 64;
/** Keys that JavaScript enumerates before all others, in numeric order (array indices). */
const INDEX_KEY = /^(?:0|[1-9][0-9]*)$/;

function sortedCopy(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
      return (value as unknown as WellFormedString).isWellFormed() ? value : GIVE_UP;
    case 'number':
      return Number.isFinite(value) ? value : GIVE_UP;
    case 'boolean':
      return value;
    case 'object':
      break;
    default:
      return GIVE_UP;
  }
  if (value === null) return null;
  if (depth > FAST_DEPTH || typeof (value as { toJSON?: unknown }).toJSON === 'function') return GIVE_UP;
  if (Array.isArray(value)) {
    const out: unknown[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) return GIVE_UP;
      const raw: unknown = value[i];
      const item = raw === undefined || typeof raw === 'symbol' ? null : sortedCopy(raw, depth + 1);
      if (item === GIVE_UP) return GIVE_UP;
      out[i] = item;
    }
    return out;
  }
  const record = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(record).sort()) {
    if (INDEX_KEY.test(key) || key === '__proto__' || !(key as unknown as WellFormedString).isWellFormed())
      return GIVE_UP;
    const raw = record[key];
    if (raw === undefined || typeof raw === 'symbol') continue; // left out, as JSON.stringify does
    const item = sortedCopy(raw, depth + 1);
    if (item === GIVE_UP) return GIVE_UP;
    out[key] = item;
  }
  return out;
}

function write(value: unknown, seen: Set<object>): string | undefined {
  switch (typeof value) {
    case 'string':
      if (!(value as unknown as WellFormedString).isWellFormed())
        throw new Error('Lone surrogate is not allowed');
      return JSON.stringify(value);
    case 'number':
      if (Number.isNaN(value)) throw new Error('NaN is not allowed');
      if (!Number.isFinite(value)) throw new Error('Infinity is not allowed');
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      return JSON.stringify(value);
  }
  if (value === null) return 'null';
  if (seen.has(value)) throw new Error('Circular reference detected');
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    seen.add(value);
    const text = write((toJSON as () => unknown).call(value), seen);
    seen.delete(value);
    return text;
  }
  seen.add(value);
  let text: string;
  if (Array.isArray(value)) {
    text = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) text += ',';
      if (!(i in value)) continue; // a hole is written as nothing, as the package's map/join does
      const item: unknown = value[i];
      text += write(item === undefined || typeof item === 'symbol' ? null : item, seen) ?? '';
    }
    text += ']';
  } else {
    const record = value as Record<string, unknown>;
    text = '{';
    let first = true;
    for (const key of Object.keys(record).sort()) {
      const item = record[key];
      if (item === undefined || typeof item === 'symbol') continue;
      if (!first) text += ',';
      first = false;
      text += `${write(key, seen)}:${write(item, seen)}`;
    }
    text += '}';
  }
  seen.delete(value);
  return text;
}
