/**
 * Hostile tool-call arguments: just over max_argument_bytes, nested 10,000 levels deep, and full of
 * `__proto__` / `constructor` / `prototype` keys. Each gets a clear refusal or a normal result — never
 * a crash, a 5xx or an internal error — nothing polluted Object.prototype in this process (the gateway
 * runs in it), and what the policy decided on is what the upstream received.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/log.js';
import { DECISION_META_KEY } from '../../src/gateway/answers.js';
import { connectClient, startTestGateway, toyServer } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import { connectTestRedis } from '../support/redis.js';
import { answerProblem, isObject, openRawSession } from './raw-mcp.js';
import type { JsonObject, RawAnswer, RawSession } from './raw-mcp.js';

const ECHO_SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'echo-args-server.mjs');
const MAX_ARGUMENT_BYTES = 64 * 1024;
const DEPTH = 10_000;

/** deny_if paths through the keys a prototype-pollution payload uses. */
const PROTO_PATHS = [
  'args.__proto__.polluted',
  'args.constructor.prototype.polluted',
  'args.prototype.polluted',
  'args.nested.__proto__.polluted',
  'args.nested.constructor.prototype.polluted',
  'args.__proto__.__proto__.polluted',
];
const denyProtoPaths = { deny_if: PROTO_PATHS.map((p) => ({ path: p, op: 'exists' })) };
const POLICY = {
  version: '1',
  default: 'deny',
  tools: { DescribeCluster: denyProtoPaths, echo_args: denyProtoPaths, count: {} },
};

const protoKeysBefore = Object.getOwnPropertyNames(Object.prototype).sort();

function callBody(id: number | string, name: string, argumentsJson: string): string {
  return `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"method":"tools/call","params":{"name":${JSON.stringify(name)},"arguments":${argumentsJson}}}`;
}

interface CallOutcome {
  kind: 'result' | 'refusal' | 'error';
  reason?: string;
  text: string;
  message: JsonObject;
}

/** The single JSON-RPC response to a tools/call, classified; fails the test on anything outside the contract. */
function outcomeOf(answer: RawAnswer, sent: string): CallOutcome {
  expect(answerProblem(answer, sent)).toBeUndefined();
  expect(answer.status).toBe(200);
  const [message] = answer.messages;
  if (!isObject(message)) throw new Error(`no response: ${answer.text.slice(0, 300)}`);
  if (isObject(message.error)) return { kind: 'error', text: String(message.error.message), message };
  const result = message.result as JsonObject;
  const content = Array.isArray(result.content) ? (result.content as unknown[]) : [];
  const first = content[0];
  const text = isObject(first) && typeof first.text === 'string' ? first.text : '';
  const decision = isObject(result._meta) ? result._meta[DECISION_META_KEY] : undefined;
  if (result.isError === true && isObject(decision))
    return { kind: 'refusal', reason: String(decision.reason), text, message };
  return { kind: 'result', text, message };
}

/** Own-property walk, as the policy engine does it, over JSON.parse output (own `__proto__` keys kept). */
function ownPathExists(value: unknown, dotted: string): boolean {
  let current = value;
  for (const segment of dotted.split('.').slice(1)) {
    if (!isObject(current) || !Object.hasOwn(current, segment)) return false;
    current = current[segment];
  }
  return current !== undefined;
}

describe('hostile tool-call arguments', () => {
  let gateway: TestGateway;
  let toy: RawSession;
  let echo: RawSession;
  let id = 1;

  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'p.json': POLICY },
      config: {
        servers: {
          toy: toyServer('p.json'),
          echo: { command: process.execPath, args: [ECHO_SERVER], policy: 'p.json' },
        },
        max_argument_bytes: MAX_ARGUMENT_BYTES,
        http: { max_body_bytes: 4 * 1024 * 1024 },
      },
    });
    toy = await openRawSession(`${gateway.url}/mcp/toy`);
    echo = await openRawSession(`${gateway.url}/mcp/echo`);
  }, 60_000);

  afterEach(() => {
    expect(({} as JsonObject).polluted).toBeUndefined();
    expect(({} as JsonObject).p).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(protoKeysBefore);
  });

  afterAll(async () => {
    await toy?.close().catch(() => undefined);
    await echo?.close().catch(() => undefined);
    await gateway?.stop();
  });

  async function call(session: RawSession, name: string, argumentsJson: string): Promise<CallOutcome> {
    const sent = callBody(++id, name, argumentsJson);
    return outcomeOf(await session.post(sent), sent);
  }

  /** Decision events in the trail (only denials with this reason, when one is given). */
  async function decisionEvents(reason?: string): Promise<number> {
    const redis = await connectTestRedis();
    try {
      const events = await new AuditLog({ redis, prefix: gateway.prefix }).query({
        type: 'decision',
        limit: 1_000_000,
      });
      return events.filter(
        (event) => reason === undefined || (event.reason === reason && event.decision === 'deny'),
      ).length;
    } finally {
      redis.disconnect();
    }
  }

  async function upstreamCalls(session: RawSession): Promise<number> {
    const outcome = await call(session, 'count', '{}');
    expect(outcome.kind, outcome.text).toBe('result');
    return Number(outcome.text);
  }

  it('refuses arguments one byte over max_argument_bytes, audited, and forwards them at exactly the limit', async () => {
    const before = await upstreamCalls(toy);
    const auditedBefore = await decisionEvents('arguments_too_large');
    const exact = JSON.stringify({ id: 'x'.repeat(MAX_ARGUMENT_BYTES - '{"id":""}'.length) });
    expect(Buffer.byteLength(exact)).toBe(MAX_ARGUMENT_BYTES);
    expect((await call(toy, 'DescribeCluster', exact)).kind).toBe('result');

    const over = JSON.stringify({ id: 'x'.repeat(MAX_ARGUMENT_BYTES + 1 - '{"id":""}'.length) });
    const refused = await call(toy, 'DescribeCluster', over);
    expect(refused).toMatchObject({ kind: 'refusal', reason: 'arguments_too_large' });
    expect(refused.text).toContain(`${MAX_ARGUMENT_BYTES + 1} bytes`);
    expect(refused.text).toContain(`at most ${MAX_ARGUMENT_BYTES}`);

    // Counted in UTF-8 bytes, not characters: 21,844 characters that are 65,537 bytes of JSON.
    const euros = '€'.repeat(21_842) + 'xx';
    const multibyte = JSON.stringify({ id: euros });
    expect(Buffer.byteLength(multibyte)).toBe(MAX_ARGUMENT_BYTES + 1);
    expect(multibyte.length).toBeLessThan(MAX_ARGUMENT_BYTES / 2);
    expect(await call(toy, 'DescribeCluster', multibyte)).toMatchObject({
      kind: 'refusal',
      reason: 'arguments_too_large',
    });

    expect((await upstreamCalls(toy)) - before).toBe(1);
    // Both refusals are in the audit trail as denials.
    expect((await decisionEvents('arguments_too_large')) - auditedBefore).toBe(2);
  });

  const deep: Record<string, string> = {
    arrays: `{"id":"c1","deep":${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}}`,
    objects: `{"id":"c1","deep":${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}}`,
    'objects and arrays alternating': `{"id":"c1","deep":${'{"a":['.repeat(DEPTH / 2)}1${']}'.repeat(DEPTH / 2)}}`,
  };

  it(`answers arguments nested ${DEPTH} levels with a clear, audited refusal or a normal result, and keeps serving`, async () => {
    for (const [label, argumentsJson] of Object.entries(deep)) {
      for (const [session, tool] of [
        [toy, 'DescribeCluster'],
        [echo, 'echo_args'],
      ] as const) {
        const before = await upstreamCalls(session);
        const decisionsBefore = await decisionEvents();
        const outcome = await call(session, tool, argumentsJson);
        expect.soft(outcome.kind, `${label} → ${tool} answered: ${outcome.text}`).not.toBe('error');
        expect
          .soft(
            (await decisionEvents()) - decisionsBefore,
            `${label} → ${tool}: one decision in the audit trail`,
          )
          .toBe(1);
        if (outcome.kind === 'refusal') {
          expect.soft(outcome.reason, `${label} → ${tool}`).toMatch(/^arguments_(invalid|too_large)$/);
          expect.soft((await upstreamCalls(session)) - before, `${label} → ${tool}: not forwarded`).toBe(0);
        }
      }
    }
    expect((await call(toy, 'DescribeCluster', '{"id":"after"}')).kind).toBe('result');
  });

  it(`refuses a tools/call whose _meta is nested ${DEPTH} levels instead of blaming the upstream for it`, async () => {
    const nest = `${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}`;
    const sent = `{"jsonrpc":"2.0","id":"meta","method":"tools/call","params":{"name":"DescribeCluster","arguments":{"id":"c1"},"_meta":{"x":${nest}}}}`;
    const answer = await toy.post(sent);
    expect(answerProblem(answer, sent)).toBeUndefined();
    const [message] = answer.messages;
    // A request the gateway cannot even serialize never reached the upstream: it is bad input (a refusal
    // or -32602), not an internal "upstream call failed" error audited as a forwarded call.
    expect(
      isObject(message) && isObject(message.error) ? message.error : undefined,
      JSON.stringify(message).slice(0, 300),
    ).not.toMatchObject({
      code: -32603,
    });
    expect((await call(toy, 'DescribeCluster', '{"id":"after"}')).kind).toBe('result');
  });

  it('refuses a deny_if on a __proto__ / constructor.prototype path when the payload is there', async () => {
    const cases = [
      '{"nested":{"__proto__":{"polluted":true}}}',
      '{"constructor":{"prototype":{"polluted":true}}}',
      '{"nested":{"constructor":{"prototype":{"polluted":1}}}}',
      '{"prototype":{"polluted":"yes"}}',
    ];
    for (const argumentsJson of cases) {
      const before = await upstreamCalls(echo);
      const outcome = await call(echo, 'echo_args', argumentsJson);
      expect({ argumentsJson, kind: outcome.kind, reason: outcome.reason }).toEqual({
        argumentsJson,
        kind: 'refusal',
        reason: 'deny_if',
      });
      expect((await upstreamCalls(echo)) - before).toBe(0);
    }
  });

  it('forwards exactly what the policy saw, whatever __proto__, constructor and prototype keys are nested at every level', async () => {
    const KEYS = ['__proto__', 'constructor', 'prototype', 'polluted', 'nested', 'toString', 'valueOf', 'id'];
    type Tree = { entries: [string, Tree | string][] };
    const { tree } = fc.letrec<{ tree: Tree; node: Tree | string }>((tie) => ({
      tree: fc
        .array(fc.tuple(fc.constantFrom(...KEYS), tie('node')), { maxLength: 4 })
        .map((entries) => ({ entries })),
      node: fc.oneof(
        { depthSize: 'small' },
        fc.constantFrom('true', '1', '"x"', 'null', '{}', '[]'),
        tie('tree'),
      ),
    }));
    const toJson = (node: Tree | string): string =>
      typeof node === 'string'
        ? node
        : `{${node.entries.map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(',')}}`;
    // A chain that puts the payload keys at every level, 20 deep.
    const chain =
      Array.from(
        { length: 20 },
        () =>
          '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"prototype":{"polluted":true},"nested":',
      ).join('') +
      '{}' +
      '}'.repeat(20);
    const argsJson = fc.oneof(
      { weight: 9, arbitrary: tree.map(toJson) },
      { weight: 1, arbitrary: fc.constant(chain) },
    );

    const seen = { forwarded: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(argsJson, async (argumentsJson) => {
        const outcome = await call(echo, 'echo_args', argumentsJson);
        if (outcome.kind === 'result') {
          seen.forwarded += 1;
          const received = JSON.parse(outcome.text) as unknown;
          // Had the upstream received a payload the policy forbids, the policy did not see what was sent.
          for (const p of PROTO_PATHS)
            expect({ path: p, received: ownPathExists(received, p) }).toEqual({ path: p, received: false });
        } else {
          seen.refused += 1;
          expect({ kind: outcome.kind, reason: outcome.reason }, outcome.text).toEqual({
            kind: 'refusal',
            reason: 'deny_if',
          });
          const sent = JSON.parse(argumentsJson) as unknown;
          expect(PROTO_PATHS.some((p) => ownPathExists(sent, p))).toBe(true);
        }
      }),
      { numRuns: 150 },
    );
    expect(seen.forwarded).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
    // And the real toy server (SDK + zod on the other side) takes the same payloads without harm.
    expect((await call(toy, 'DescribeCluster', chain)).kind).toMatch(/^(result|refusal)$/);
  });

  it('still serves a real client after all of the above', async () => {
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
    const client = await connectClient(`${gateway.url}/mcp`);
    const names = (await client.listTools()).tools.map((t) => t.name);
    await client.close();
    expect(names).toEqual(expect.arrayContaining(['toy__DescribeCluster', 'echo__echo_args']));
  });
});
