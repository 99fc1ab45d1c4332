/** Policy problems as `{file, JSON pointer, what was expected}`, in the order they appear in the document. */
import type { z } from 'zod';
import { KNOWN_KEYS } from './schema.js';

export interface PolicyIssue {
  file: string;
  /** RFC 6901 JSON pointer, e.g. `/tools/X/deny_if/0/op`; "" is the document root. */
  path: string;
  /** What was expected (and found). */
  message: string;
}

/** `<file>:<pointer>: <message>`, or `<file>: <message>` for the document as a whole. */
export function formatIssue(issue: PolicyIssue): string {
  return issue.path ? `${issue.file}:${issue.path}: ${issue.message}` : `${issue.file}: ${issue.message}`;
}

export function escapePointerSegment(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function toPointer(path: readonly PropertyKey[]): string {
  return path.map((segment) => `/${escapePointerSegment(String(segment))}`).join('');
}

function knownKeysAt(path: readonly PropertyKey[]): readonly string[] | undefined {
  const [first, second, third] = path;
  const isIndex = typeof path[path.length - 1] === 'number';
  if (path.length === 0) return KNOWN_KEYS.document;
  if (first === 'all_tools') {
    if (path.length === 1) return KNOWN_KEYS.allTools;
    if (path.length === 2 && second === 'rate_limit') return KNOWN_KEYS.rateLimit;
    if (path.length === 3 && second === 'limits' && isIndex) return KNOWN_KEYS.limit;
  }
  if (first === 'tools') {
    if (path.length === 2) return KNOWN_KEYS.rule;
    if (path.length === 3 && third === 'rate_limit') return KNOWN_KEYS.rateLimit;
    if (path.length === 4 && third === 'limits' && isIndex) return KNOWN_KEYS.limit;
    if (path.length === 4 && (third === 'require' || third === 'deny_if') && isIndex)
      return KNOWN_KEYS.condition;
  }
  return undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] as number;
}

export function unknownKeyMessage(key: string, known: readonly string[] | undefined): string {
  if (!known) return `unknown key "${key}"`;
  const normalized = key.toLowerCase().replace(/[-\s]/g, '_');
  const close =
    known.find((k) => k === normalized) ??
    known
      .map((k) => ({ k, d: editDistance(normalized, k) }))
      .filter(({ d }) => d <= 2)
      .sort((x, y) => x.d - y.d)[0]?.k;
  return close
    ? `unknown key "${key}" (did you mean "${close}"?)`
    : `unknown key "${key}"; expected one of ${known.join(', ')}`;
}

/** Index of each path segment within its parent in the parsed document; absent keys sort last. */
function documentPosition(root: unknown, path: readonly PropertyKey[]): number[] {
  const position: number[] = [];
  let node: unknown = root;
  for (const segment of path) {
    if (Array.isArray(node) && typeof segment === 'number') {
      position.push(segment);
      node = node[segment];
    } else if (typeof node === 'object' && node !== null && !Array.isArray(node)) {
      const keys = Object.keys(node);
      const index = keys.indexOf(String(segment));
      position.push(index < 0 ? keys.length : index);
      node = index < 0 ? undefined : Object.getOwnPropertyDescriptor(node, String(segment))?.value;
    } else {
      position.push(0);
      node = undefined;
    }
  }
  return position;
}

function comparePositions(a: number[], b: number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/**
 * Zod issues → policy issues: each unknown key becomes its own issue at the key's pointer (with a
 * suggestion), and all are sorted into document order (stable, so ties keep zod's order).
 */
export function fromZodIssues(
  file: string,
  root: unknown,
  issues: readonly z.core.$ZodIssue[],
): PolicyIssue[] {
  const located: { path: PropertyKey[]; message: string }[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(issue.path);
      for (const key of issue.keys)
        located.push({ path: [...issue.path, key], message: unknownKeyMessage(key, known) });
    } else located.push({ path: issue.path, message: issue.message });
  }
  return located
    .map((issue) => ({ ...issue, position: documentPosition(root, issue.path) }))
    .sort((a, b) => comparePositions(a.position, b.position))
    .map(({ path, message }) => ({ file, path: toPointer(path), message }));
}
