/**
 * Fuzzes tool names in tools/call against a default-deny policy that allows only DescribeCluster (and
 * the read-only `count` used to audit the upstream) and hides Delete*: case changes, homoglyphs,
 * fullwidth letters, zero-width and combining characters, whitespace, NUL, server prefixes, path-like
 * names, very long names and prototype names. Only a name the upstream lists, exactly, under an
 * allowing rule may ever reach it; the upstream's own call counter proves nothing else did.
 *
 * Each MCP session has its own upstream process, so the counter is read in the session that was
 * fuzzed: `count` is allowed by the same policy (it only reads the counter and does not increment it).
 * A second grant whose own policy (grant_policies) allows everything shows the hidden tools are real
 * and reachable when a policy allows them, so the refusals seen by the fuzzed grant are the policy's.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DECISION_META_KEY } from '../../src/gateway/answers.js';
import { startTestGateway, toyServer } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import { isObject, openRawSession, toolCallBody } from './raw-mcp.js';
import type { JsonObject, RawSession } from './raw-mcp.js';

const RESTRICTED = {
  version: '1',
  default: 'deny',
  hide: ['Delete*'],
  tools: { DescribeCluster: {}, count: {} },
};
const ALLOW_ALL = { version: '1', default: 'allow' };
const AGENT = { authorization: 'Bearer agent-token-0123456789' };
const ADMIN = { authorization: 'Bearer admin-token-0123456789' };

const HOMOGLYPHS: Record<string, string[]> = {
  a: ['\u0430', '\u03B1'],
  e: ['\u0435', '\u03B5'],
  o: ['\u043E', '\u03BF', '\u0585'],
  c: ['\u0441', '\u03F2'],
  p: ['\u0440', '\u03C1'],
  r: ['\u0433'],
  i: ['\u0456', '\u0131', '\u03B9'],
  l: ['\u04CF', '\u0399', '\u217C'],
  s: ['\u0455', '\u017F'],
  t: ['\u0442'],
  u: ['\u03C5', '\u057D'],
  C: ['\u0421', '\u03F9', '\u216D'],
  D: ['\u216E', '\u13A0'],
  E: ['\u0415', '\u0395'],
  K: ['\u212A', '\u039A'],
  L: ['\u216C', '\u13DE'],
  R: ['\u13A1', '\u211B'],
  T: ['\u0422', '\u03A4'],
};
const INVISIBLE = ['\u200B', '\u200C', '\u200D', '\u2060', '\uFEFF', '\u00AD', '\u0301', '\u180E', '\u034F'];
const WHITESPACE = [' ', '\t', '\n', '\r', '\u00A0', '\u2028', '\u3000', '\u000B'];
const PREFIXES = [
  'toy__',
  'toy__toy__',
  'other__',
  'other__toy__',
  'toy__other__',
  'TOY__',
  'Toy__',
  'toy_',
  'toy___',
  '__toy__',
  '_toy__',
  'toy__ ',
  ' toy__',
  'toy/',
  'toy.',
  'toy::',
  'to\u0443__',
  'toy\uFF3F\uFF3F',
  'toy%5F%5F',
  '__',
  '____',
];
const PATHS = ['../', './', '/', '..\\', 'toy/../', '%2e%2e%2f', '..%2f', 'file:///', 'mcp://toy/'];
const STRANGE = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  '__defineGetter__',
  'toy____proto__',
  'toy__constructor',
  '__proto____DeleteCluster',
  'Delete*',
  'Describe*',
  '*',
  '?',
  'DescribeCluster*',
  'D*',
  '',
  ' ',
  '\u0000',
];

type Mutation = (name: string) => fc.Arbitrary<string>;
const at = (name: string): fc.Arbitrary<number> => fc.integer({ min: 0, max: name.length });
const mutations: Mutation[] = [
  // random case changes
  (name) =>
    fc
      .array(fc.boolean(), { minLength: name.length, maxLength: name.length })
      .map((flips) =>
        [...name]
          .map((ch, i) => (flips[i] ? (ch === ch.toUpperCase() ? ch.toLowerCase() : ch.toUpperCase()) : ch))
          .join(''),
      ),
  (name) =>
    fc.constantFrom(
      name.toLowerCase(),
      name.toUpperCase(),
      name.toLocaleUpperCase('tr'),
      name.normalize('NFKD'),
    ),
  // homoglyphs (Cyrillic, Greek, Armenian, Cherokee, letter-like symbols)
  (name) =>
    fc.tuple(fc.nat(), fc.nat()).map(([pos, pick]) => {
      const candidates = [...name]
        .map((ch, i) => [ch, i] as const)
        .filter(([ch]) => HOMOGLYPHS[ch] !== undefined);
      const chosen = candidates[pos % Math.max(candidates.length, 1)];
      if (!chosen) return name;
      const glyphs = HOMOGLYPHS[chosen[0]] ?? [chosen[0]];
      return `${name.slice(0, chosen[1])}${glyphs[pick % glyphs.length] ?? ''}${name.slice(chosen[1] + 1)}`;
    }),
  // fullwidth letters, all or some
  (name) =>
    fc
      .array(fc.boolean(), { minLength: name.length, maxLength: name.length })
      .map((picks) =>
        [...name]
          .map((ch, i) =>
            picks[i] && ch > ' ' && ch <= '~' ? String.fromCharCode(ch.charCodeAt(0) + 0xfee0) : ch,
          )
          .join(''),
      ),
  // zero-width, joiners, soft hyphen, combining marks
  (name) =>
    fc
      .tuple(at(name), fc.constantFrom(...INVISIBLE))
      .map(([i, ch]) => `${name.slice(0, i)}${ch}${name.slice(i)}`),
  // leading / trailing whitespace
  (name) =>
    fc
      .tuple(fc.constantFrom(...WHITESPACE), fc.boolean())
      .map(([ws, lead]) => (lead ? `${ws}${name}` : `${name}${ws}`)),
  // NUL anywhere
  (name) => at(name).map((i) => `${name.slice(0, i)}\u0000${name.slice(i)}`),
  // server prefixes, single and doubled
  (name) => fc.constantFrom(...PREFIXES).map((prefix) => `${prefix}${name}`),
  // path-like names
  (name) => fc.constantFrom(...PATHS).map((path) => `${path}${name}`),
  // very long names
  (name) =>
    fc
      .integer({ min: 1_000, max: 100_000 })
      .map((n) => (n % 2 === 0 ? `${'A'.repeat(n)}${name}` : `${name}${'\u200B'.repeat(n)}`)),
  // a glob character where a letter was
  (name) =>
    fc
      .tuple(at(name), fc.constantFrom('*', '?'))
      .map(([i, ch]) => `${name.slice(0, i)}${ch}${name.slice(i + 1)}`),
];

const baseName = fc.constantFrom('DeleteCluster', 'CloneContainerToECR', 'DescribeCluster', 'ListClusters');
const mutated = fc
  .tuple(
    baseName,
    fc.array(fc.integer({ min: 0, max: mutations.length - 1 }), { minLength: 1, maxLength: 3 }),
  )
  .chain(([base, picks]) =>
    picks.reduce<fc.Arbitrary<string>>(
      (acc, pick) => acc.chain((name) => (mutations[pick] ?? fc.constant)(name)),
      fc.constant(base),
    ),
  );
/** Mostly mutated names; some exact names of the endpoint (allowed, denied and hidden), so every outcome is exercised. */
const toolName = (exact: string[]): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 12, arbitrary: mutated },
    { weight: 2, arbitrary: fc.constantFrom(...exact) },
    { weight: 1, arbitrary: fc.constantFrom(...STRANGE) },
    { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
  );

interface Outcome {
  kind: 'forwarded' | 'refused' | 'unknown' | 'other';
  detail: string;
}

/** Classifies the answer to a tools/call: a forwarded result, a policy refusal, "Unknown tool", or anything else. */
function classify(answerMessages: unknown[], name: string): Outcome {
  const [message] = answerMessages;
  const detail = JSON.stringify(message)?.slice(0, 400) ?? 'nothing';
  if (answerMessages.length !== 1 || !isObject(message)) return { kind: 'other', detail };
  if (isObject(message.error)) {
    const error = message.error;
    return error.code === -32602 && error.message === `MCP error -32602: Unknown tool: ${name}`
      ? { kind: 'unknown', detail }
      : { kind: 'other', detail };
  }
  const result = message.result;
  if (!isObject(result)) return { kind: 'other', detail };
  const meta = isObject(result._meta) ? result._meta : undefined;
  const decision = meta?.[DECISION_META_KEY];
  if (result.isError === true && isObject(decision) && decision.decision === 'deny')
    return { kind: 'refused', detail };
  if (result.isError !== true && decision === undefined) return { kind: 'forwarded', detail };
  return { kind: 'other', detail };
}

function textOf(message: unknown): string {
  if (!isObject(message) || !isObject(message.result) || !Array.isArray(message.result.content)) return '';
  const [first] = message.result.content as unknown[];
  return isObject(first) && typeof first.text === 'string' ? first.text : '';
}

describe('tool names cannot be bent around the policy', () => {
  let gateway: TestGateway;
  const sessions: RawSession[] = [];

  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'restricted.json': RESTRICTED, 'allow-all.json': ALLOW_ALL },
      config: {
        servers: {
          toy: toyServer('restricted.json', { grant_policies: { admin: 'allow-all.json' } }),
          other: toyServer('restricted.json', { grant_policies: { admin: 'allow-all.json' } }),
        },
        grants: [
          { id: 'agent', owner: 'agent-owner', token_env: 'AGENT_TOKEN' },
          { id: 'admin', owner: 'admin-owner', token_env: 'ADMIN_TOKEN' },
        ],
        http: { max_body_bytes: 2 * 1024 * 1024 },
      },
      env: { AGENT_TOKEN: 'agent-token-0123456789', ADMIN_TOKEN: 'admin-token-0123456789' },
    });
  }, 60_000);

  afterAll(async () => {
    for (const session of sessions) await session.close().catch(() => undefined);
    await gateway?.stop();
  });

  async function open(path: string, auth: Record<string, string>): Promise<RawSession> {
    const session = await openRawSession(`${gateway.url}${path}`, auth);
    sessions.push(session);
    return session;
  }

  async function call(session: RawSession, id: number, name: string): Promise<unknown[]> {
    // Valid arguments for every toy tool, so a call that did reach the upstream would run and be counted.
    const answer = await session.post(toolCallBody(id, name, { id: 'c1', repositoryName: 'r1' }));
    expect(answer.status, answer.text.slice(0, 300)).toBe(200);
    return answer.messages;
  }

  async function upstreamCalls(session: RawSession, countTool: string): Promise<number> {
    const messages = await call(session, 1_000_000, countTool);
    const text = textOf(messages[0]);
    expect(text, JSON.stringify(messages)).toMatch(/^\d+$/);
    return Number(text);
  }

  it('the hidden and denied tools are real: a grant whose policy allows them reaches them', async () => {
    const admin = await open('/mcp/toy', ADMIN);
    expect(classify(await call(admin, 1, 'DeleteCluster'), 'DeleteCluster').kind).toBe('forwarded');
    expect(classify(await call(admin, 2, 'CloneContainerToECR'), 'CloneContainerToECR').kind).toBe(
      'forwarded',
    );
    expect(await upstreamCalls(admin, 'count')).toBe(2);
    const agent = await open('/mcp/toy', AGENT);
    expect(classify(await call(agent, 1, 'DeleteCluster'), 'DeleteCluster').kind).toBe('unknown');
    expect(classify(await call(agent, 2, 'CloneContainerToECR'), 'CloneContainerToECR').kind).toBe('refused');
    expect(classify(await call(agent, 3, 'DescribeCluster'), 'DescribeCluster').kind).toBe('forwarded');
    expect(await upstreamCalls(agent, 'count')).toBe(1);
  });

  const endpoints: {
    path: string;
    allowed: Set<string>;
    visible: Set<string>;
    hidden: string[];
    counters: Record<string, string>;
  }[] = [
    {
      path: '/mcp/toy',
      allowed: new Set(['DescribeCluster', 'count']),
      visible: new Set([
        'DescribeCluster',
        'count',
        'CloneContainerToECR',
        'ListClusters',
        'crash',
        'sleep',
        'pid',
        'add-tool',
      ]),
      hidden: ['DeleteCluster'],
      counters: { toy: 'count' },
    },
    {
      path: '/mcp',
      allowed: new Set(['toy__DescribeCluster', 'toy__count', 'other__DescribeCluster', 'other__count']),
      visible: new Set(
        [
          'DescribeCluster',
          'count',
          'CloneContainerToECR',
          'ListClusters',
          'crash',
          'sleep',
          'pid',
          'add-tool',
        ].flatMap((t) => [`toy__${t}`, `other__${t}`]),
      ),
      hidden: ['toy__DeleteCluster', 'other__DeleteCluster'],
      counters: { toy: 'toy__count', other: 'other__count' },
    },
  ];

  for (const endpoint of endpoints) {
    it(`forwards only exact allowed names on ${endpoint.path}; every other name is refused or unknown`, async () => {
      const session = await open(endpoint.path, AGENT);
      const before: Record<string, number> = {};
      for (const [server, tool] of Object.entries(endpoint.counters))
        before[server] = await upstreamCalls(session, tool);
      const expected: Record<string, number> = Object.fromEntries(
        Object.keys(endpoint.counters).map((s) => [s, 0]),
      );
      const seen = { forwarded: 0, refused: 0, unknown: 0 };
      let id = 10;
      await fc.assert(
        fc.asyncProperty(toolName([...endpoint.visible, ...endpoint.hidden]), async (name) => {
          const outcome = classify(await call(session, ++id, name), name);
          const allowed = endpoint.allowed.has(name);
          const want = allowed ? 'forwarded' : endpoint.visible.has(name) ? 'refused' : 'unknown';
          expect({ name, kind: outcome.kind }, outcome.detail).toEqual({ name, kind: want });
          seen[want] += 1;
          if (allowed && !name.endsWith('count')) {
            const server = endpoint.path === '/mcp' ? name.slice(0, name.indexOf('__')) : 'toy';
            expected[server] = (expected[server] ?? 0) + 1;
          }
        }),
        { numRuns: 400 },
      );
      // The upstream processes ran exactly the allowed calls: nothing denied or hidden slipped through.
      for (const [server, tool] of Object.entries(endpoint.counters)) {
        expect({ server, calls: (await upstreamCalls(session, tool)) - (before[server] ?? 0) }).toEqual({
          server,
          calls: expected[server],
        });
      }
      expect(seen.refused + seen.unknown).toBeGreaterThan(250);
    }, 60_000);
  }

  it('keeps the refusal shape for the exact denied and hidden names on both endpoints', async () => {
    const single = await open('/mcp/toy', AGENT);
    const aggregated = await open('/mcp', AGENT);
    const cases: [RawSession, string, Outcome['kind']][] = [
      [single, 'CloneContainerToECR', 'refused'],
      [single, 'ListClusters', 'refused'],
      [single, 'DeleteCluster', 'unknown'],
      [single, 'toy__DescribeCluster', 'unknown'],
      [aggregated, 'toy__CloneContainerToECR', 'refused'],
      [aggregated, 'other__DeleteCluster', 'unknown'],
      [aggregated, 'DescribeCluster', 'unknown'],
      [aggregated, 'toy__toy__DescribeCluster', 'unknown'],
      [aggregated, '__proto__', 'unknown'],
      [aggregated, 'constructor__DescribeCluster', 'unknown'],
    ];
    let id = 1;
    for (const [session, name, kind] of cases) {
      const messages = await call(session, ++id, name);
      expect({ name, kind: classify(messages, name).kind }).toEqual({ name, kind });
      if (kind === 'refused') {
        const result = (messages[0] as JsonObject).result as JsonObject;
        expect((result._meta as JsonObject)[DECISION_META_KEY]).toMatchObject({
          decision: 'deny',
          reason: 'default_deny',
        });
      }
    }
    expect(await upstreamCalls(single, 'count')).toBe(0);
    expect(await upstreamCalls(aggregated, 'toy__count')).toBe(0);
    expect(await upstreamCalls(aggregated, 'other__count')).toBe(0);
  });
});
