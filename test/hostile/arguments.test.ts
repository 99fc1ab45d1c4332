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
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Redis } from 'ioredis';
import { MAX_AUDIT_ARGUMENTS_BYTES, REDACTED, hashArguments } from '../../src/audit/args.js';
import { MAX_EVENT_BYTES, MAX_EVENT_NAME_CHARS, MAX_EVENT_TEXT_CHARS } from '../../src/audit/event-bounds.js';
import type { AuditEvent } from '../../src/audit/event.js';
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

/** Bytes Redis holds, as INFO memory reports them. */
async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  const match = /^used_memory:(\d+)/m.exec(info);
  if (!match) throw new Error('INFO memory has no used_memory');
  return Number(match[1]);
}

const HUGE_CALLS = 200;
const HUGE_ARGUMENT_BYTES = 200 * 1024;
/** (a) ~200 KB of one-character strings in an array: 51,200 elements, each "[redacted]" when redacted. */
const manySmallStrings = { items: Array.from({ length: HUGE_ARGUMENT_BYTES / 4 }, () => 'a') };
/** (b) one 200 KB string. */
const oneBigString = { blob: 'b'.repeat(HUGE_ARGUMENT_BYTES) };

describe.each([
  { keepArguments: false, field: 'argsRedacted' as const },
  { keepArguments: true, field: 'args' as const },
])('audit events of huge arguments (keep_arguments: $keepArguments)', ({ keepArguments, field }) => {
  let gateway: TestGateway;
  let client: Client;
  let redis: Redis;

  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'p.json': POLICY },
      config: {
        servers: { toy: toyServer('p.json') },
        max_argument_bytes: MAX_ARGUMENT_BYTES,
        http: { max_body_bytes: 4 * 1024 * 1024 },
        audit: { keep_arguments: keepArguments },
      },
    });
    client = await connectClient(`${gateway.url}/mcp/toy`);
    redis = await connectTestRedis();
  }, 60_000);

  afterAll(async () => {
    await client?.close().catch(() => undefined);
    redis?.disconnect();
    await gateway?.stop();
  });

  async function trail(): Promise<AuditEvent[]> {
    return new AuditLog({ redis, prefix: gateway.prefix }).query({ limit: 1_000_000 });
  }

  it(`keeps ${HUGE_CALLS} refused calls with 200 KB arguments to a few MB of Redis, every event bounded`, async () => {
    expect(Buffer.byteLength(JSON.stringify(manySmallStrings))).toBeGreaterThan(HUGE_ARGUMENT_BYTES);
    const before = await usedMemory(redis);
    for (let i = 0; i < HUGE_CALLS; i++) {
      const args = i % 2 === 0 ? manySmallStrings : oneBigString;
      const result = await client.callTool({ name: 'DescribeCluster', arguments: args });
      expect(result.isError).toBe(true);
    }
    const grown = (await usedMemory(redis)) - before;
    // Without a bound: ~650 KB per redacted event of (a), ~200 KB per kept event — over 60 MB in all.
    expect(grown).toBeLessThan(8 * 1024 * 1024);

    const refused = (await trail()).filter((event) => event.reason === 'arguments_too_large');
    expect(refused).toHaveLength(HUGE_CALLS);
    for (const event of refused) {
      expect(Buffer.byteLength(JSON.stringify(event))).toBeLessThan(MAX_EVENT_BYTES);
      const part = event[field] as { truncated: boolean; bytes: number; preview: string };
      expect(Buffer.byteLength(JSON.stringify(part))).toBeLessThanOrEqual(MAX_AUDIT_ARGUMENTS_BYTES);
      const args = event.argsSha256 === hashArguments(manySmallStrings) ? manySmallStrings : oneBigString;
      expect(event.argsSha256).toBe(hashArguments(args));
      if (!keepArguments && args === oneBigString) {
        // One big string redacts to a small shape: kept whole, as before.
        expect(part).toEqual({ blob: REDACTED });
        continue;
      }
      // The hash still names the exact arguments, and `bytes` says how big they were.
      expect(part).toMatchObject({ truncated: true, preview: expect.any(String) });
      expect(part.bytes).toBe(Buffer.byteLength(JSON.stringify(args)));
      if (!keepArguments) expect(part.preview).not.toMatch(/"a"|bbb/);
    }
    expect((await new AuditLog({ redis, prefix: gateway.prefix }).verify()).ok).toBe(true);
  }, 120_000);

  it('bounds a hostile tool name and the message quoting it', async () => {
    const name = `${'n'.repeat(100_000)}-${keepArguments}`;
    await expect(client.callTool({ name, arguments: {} })).rejects.toThrow(/Unknown tool/);
    const [event] = (await trail()).filter((e) => e.tool.startsWith('nnnn'));
    expect(event).toBeDefined();
    expect(event?.tool.length).toBeLessThanOrEqual(MAX_EVENT_NAME_CHARS);
    expect(event?.message?.length).toBeLessThanOrEqual(MAX_EVENT_TEXT_CHARS);
    expect(Buffer.byteLength(JSON.stringify(event))).toBeLessThan(8 * 1024);
  });

  it('writes a small call exactly as before (the same redacted shape, or the arguments themselves)', async () => {
    const args = { id: 'c-1', nested: { list: ['x', 2, true, null] } };
    const result = await client.callTool({ name: 'DescribeCluster', arguments: args });
    expect(result.isError).toBeFalsy();
    const [decision] = (await trail()).filter(
      (event) => event.type === 'decision' && event.argsSha256 === hashArguments(args),
    );
    expect(decision?.[field]).toEqual(
      keepArguments ? args : { id: REDACTED, nested: { list: [REDACTED, REDACTED, true, null] } },
    );
  });
});
