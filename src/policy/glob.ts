/**
 * Tool-name globs: `*` matches any run of characters (including none), `?` exactly one character,
 * everything else itself. Case-sensitive, whole-name. No RegExp is built from the pattern: a greedy
 * matcher that remembers only the last `*` runs in O(pattern × name) at worst and never backtracks further.
 */

export function isGlob(pattern: string): boolean {
  return pattern.includes('*') || pattern.includes('?');
}

export function matchGlob(pattern: string, name: string): boolean {
  // Compare code points, so `?` matches one character even outside the Basic Multilingual Plane.
  const p = Array.from(pattern);
  const s = Array.from(name);
  let pi = 0;
  let si = 0;
  let starPi = -1;
  let starSi = 0;
  while (si < s.length) {
    const pc = p[pi];
    if (pc === '*') {
      starPi = pi++;
      starSi = si;
    } else if (pc !== undefined && (pc === '?' || pc === s[si])) {
      pi++;
      si++;
    } else if (starPi >= 0) {
      // Let the last `*` absorb one more character and retry from just after it.
      pi = starPi + 1;
      si = ++starSi;
    } else return false;
  }
  while (p[pi] === '*') pi++;
  return pi === p.length;
}
