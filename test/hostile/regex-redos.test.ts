/**
 * Catastrophic-backtracking patterns in deny_if, fed 100,000-character arguments crafted to make a
 * backtracking engine run for longer than the universe has existed. Policy regexes run on RE2, so
 * each call through the gateway is answered in milliseconds, and time grows with the input's length,
 * not exponentially. The times are printed; the bounds asserted are deliberately loose.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DECISION_META_KEY } from '../../src/gateway/answers.js';
import { startTestGateway, toyServer } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import { isObject, openRawSession, toolCallBody } from './raw-mcp.js';
import type { JsonObject, RawSession } from './raw-mcp.js';

const LENGTH = 100_000;
/** Far above what RE2 needs (milliseconds), far below what any backtracking engine needs on these inputs. */
const BOUND_MS = 5_000;

const PATTERNS = {
  nestedPlus: '^(a+)+$',
  overlappingAlternation: '(a|aa)+$',
  repeatedDotStar: '(.*a){20}',
  nestedPlusUnanchored: '(x+x+)+y',
  starOfOptional: '^(a?){50}a{50}$',
};
type PatternKey = keyof typeof PATTERNS;

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    DescribeCluster: {
      deny_if: (Object.keys(PATTERNS) as PatternKey[]).map((key) => ({
        path: `args.${key}`,
        op: 'regex',
        value: PATTERNS[key],
      })),
    },
  },
};

/** An input of `length` characters that makes a backtracking engine explode on the pattern (and does not match). */
function evilInput(key: PatternKey, length: number): string {
  switch (key) {
    case 'nestedPlus':
    case 'overlappingAlternation':
      return `${'a'.repeat(length - 1)}!`;
    case 'repeatedDotStar': {
      // Nineteen a's spread out: every way of splitting the text into 20 runs ending in "a" is tried.
      const gap = Math.floor(length / 20);
      return `${'x'.repeat(gap - 1)}a`.repeat(19).padEnd(length, 'x');
    }
    case 'nestedPlusUnanchored':
      return 'x'.repeat(length);
    case 'starOfOptional':
      return 'a'.repeat(length);
  }
}

interface Timed {
  ms: number;
  kind: 'allowed' | 'denied' | 'other';
  detail: string;
}

describe('policy regexes run in linear time', () => {
  let gateway: TestGateway;
  let session: RawSession;
  const report: string[] = [];
  let id = 1;

  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'redos.json': POLICY },
      config: {
        servers: { toy: toyServer('redos.json') },
        max_argument_bytes: 1024 * 1024,
        http: { max_body_bytes: 4 * 1024 * 1024 },
      },
    });
    session = await openRawSession(`${gateway.url}/mcp/toy`);
    // Warm up the session (upstream tool list, JIT) so the timings below are the calls themselves.
    await timedCall({ id: 'warm-up' });
  }, 60_000);

  afterAll(async () => {
    console.info(`ReDoS timings through the gateway (tools/call round trip):\n${report.join('\n')}`);
    await session?.close().catch(() => undefined);
    await gateway?.stop();
  });

  async function timedCall(args: Record<string, string>): Promise<Timed> {
    const started = performance.now();
    const answer = await session.post(toolCallBody(++id, 'DescribeCluster', args));
    const ms = performance.now() - started;
    const [message] = answer.messages;
    const detail = `HTTP ${answer.status} ${JSON.stringify(message)?.slice(0, 300) ?? answer.text.slice(0, 300)}`;
    if (answer.status !== 200 || !isObject(message) || !isObject(message.result))
      return { ms, kind: 'other', detail };
    const result = message.result;
    const decision = isObject(result._meta)
      ? (result._meta[DECISION_META_KEY] as JsonObject | undefined)
      : undefined;
    if (result.isError === true && decision?.reason === 'deny_if') return { ms, kind: 'denied', detail };
    if (result.isError !== true && decision === undefined) return { ms, kind: 'allowed', detail };
    return { ms, kind: 'other', detail };
  }

  for (const key of Object.keys(PATTERNS) as PatternKey[]) {
    it(`answers ${PATTERNS[key]} against a crafted ${LENGTH.toLocaleString('en')}-character argument within ${BOUND_MS} ms, growing linearly`, async () => {
      const times: Record<number, number> = {};
      for (const length of [LENGTH / 4, LENGTH / 2, LENGTH]) {
        const input = evilInput(key, length);
        expect(input).toHaveLength(length);
        const call = await timedCall({ id: 'c1', [key]: input });
        expect({ length, kind: call.kind }, call.detail).toEqual({ length, kind: 'allowed' });
        expect(call.ms).toBeLessThan(BOUND_MS);
        times[length] = call.ms;
      }
      report.push(
        `  ${PATTERNS[key].padEnd(18)} ${Object.entries(times)
          .map(([n, ms]) => `${Number(n).toLocaleString('en')} chars: ${ms.toFixed(1)} ms`)
          .join(', ')}`,
      );
      // Linear: 4x the input costs about 4x the time (a quadratic engine would need 16x, a backtracking one far more).
      const quarter = times[LENGTH / 4] ?? 0;
      expect(times[LENGTH] ?? Infinity).toBeLessThan(8 * quarter + 500);
    });
  }

  it('still denies what the patterns do match, just as fast, with every pattern evaluated on one call', async () => {
    const matching: Record<string, string> = { id: 'c1', nestedPlus: 'a'.repeat(LENGTH) };
    const denied = await timedCall(matching);
    expect(denied.kind, denied.detail).toBe('denied');
    expect(denied.detail).toContain('/tools/DescribeCluster/deny_if/0');
    expect(denied.ms).toBeLessThan(BOUND_MS);

    const allEvil: Record<string, string> = { id: 'c1' };
    for (const key of Object.keys(PATTERNS) as PatternKey[]) allEvil[key] = evilInput(key, LENGTH);
    const all = await timedCall(allEvil);
    expect(all.kind, all.detail).toBe('allowed');
    expect(all.ms).toBeLessThan(BOUND_MS);
    report.push(
      `  match ^(a+)+$ on ${LENGTH.toLocaleString('en')} a's: ${denied.ms.toFixed(1)} ms; all ${Object.keys(PATTERNS).length} patterns on one call (${(Object.keys(PATTERNS).length * LENGTH).toLocaleString('en')} chars): ${all.ms.toFixed(1)} ms`,
    );
  });
});
