import type { Condition } from './types.js';

const MISSING: unique symbol = Symbol('missing');

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/**
 * Follows `segments` from `args` through own properties only (never the prototype chain, so
 * `args.constructor` on `{}` is missing, not Object). Numeric segments index arrays.
 */
function resolvePath(args: unknown, segments: readonly string[]): unknown {
  let current: unknown = args;
  for (const segment of segments) {
    if (Array.isArray(current)) {
      if (!ARRAY_INDEX.test(segment)) return MISSING;
      const index = Number(segment);
      if (index >= current.length) return MISSING;
      current = current[index];
    } else if (typeof current === 'object' && current !== null) {
      if (!Object.hasOwn(current, segment)) return MISSING;
      current = (current as Record<string, unknown>)[segment];
    } else return MISSING;
  }
  return current === undefined ? MISSING : current;
}

/**
 * Deep equality of JSON values (own enumerable keys, order-insensitive for objects). Recursion goes no
 * deeper than the shallower side, and policy values are bounded by the loader's nesting limit.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => jsonEqual(item, b[i]));
  }
  const aKeys = Object.keys(a);
  if (aKeys.length !== Object.keys(b).length) return false;
  return aKeys.every(
    (key) =>
      Object.hasOwn(b, key) &&
      jsonEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]),
  );
}

function compareNumbers(op: 'gt' | 'gte' | 'lt' | 'lte', actual: unknown, expected: unknown): boolean {
  if (typeof actual !== 'number' || typeof expected !== 'number') return false;
  switch (op) {
    case 'gt':
      return actual > expected;
    case 'gte':
      return actual >= expected;
    case 'lt':
      return actual < expected;
    case 'lte':
      return actual <= expected;
  }
}

/**
 * Whether the condition holds for these arguments. A missing path satisfies only `not_exists` and
 * `neq`; every other operator is false on it. Type mismatches are false, never errors.
 */
export function evaluateCondition(cond: Condition, args: unknown): boolean {
  const actual = resolvePath(args, cond.segments);
  if (actual === MISSING) return cond.op === 'not_exists' || cond.op === 'neq';
  switch (cond.op) {
    case 'exists':
      return true;
    case 'not_exists':
      return false;
    case 'eq':
      return jsonEqual(actual, cond.value);
    case 'neq':
      return !jsonEqual(actual, cond.value);
    case 'in':
      return Array.isArray(cond.value) && cond.value.some((item) => jsonEqual(actual, item));
    case 'not_in':
      return Array.isArray(cond.value) && !cond.value.some((item) => jsonEqual(actual, item));
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
      return compareNumbers(cond.op, actual, cond.value);
    case 'regex':
      return typeof actual === 'string' && cond.matches !== undefined && cond.matches(actual);
    case 'contains':
      if (typeof actual === 'string') return typeof cond.value === 'string' && actual.includes(cond.value);
      return Array.isArray(actual) && actual.some((item) => jsonEqual(item, cond.value));
  }
}

/** Whether the condition's path is absent from the arguments (used to explain a failed requirement). */
export function isPathMissing(cond: Condition, args: unknown): boolean {
  return resolvePath(args, cond.segments) === MISSING;
}

function showValue(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

/** `args.env eq "prod"`, `args.id exists`: how a condition is named in messages. */
export function describeCondition(cond: Condition): string {
  if (cond.op === 'exists' || cond.op === 'not_exists') return `${cond.path} ${cond.op}`;
  return `${cond.path} ${cond.op} ${showValue(cond.value)}`;
}
