/** Deepest nesting of arrays and objects the gateway accepts in a tool call's params. */
export const MAX_PARAMS_DEPTH = 128;

/**
 * True when a JSON value nests arrays/objects deeper than `max` levels. Iterative, so a hostile value
 * cannot overflow the stack here (hashing or serializing it recursively would).
 */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number];
    if (typeof current !== 'object' || current === null) continue;
    if (depth + 1 > max) return true;
    const children = Array.isArray(current) ? current : Object.values(current);
    for (const child of children)
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}
