/**
 * Property-based fuzzing of what a client can POST to /mcp and /mcp/<server>: arbitrary bytes and
 * JSON before any session, and arbitrary JSON-RPC-shaped messages inside an initialized session.
 * The gateway must never answer 5xx, never crash, and answer every body per the JSON-RPC contract.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, everythingServer, startTestGateway, toyServer } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import { answerProblem, isObject, openRawSession, postRaw } from './raw-mcp.js';
import type { RawSession } from './raw-mcp.js';

const TOY_POLICY = {
  version: '1',
  default: 'deny',
  hide: ['crash', 'add-tool', 'Delete*'],
  tools: {
    DescribeCluster: {},
    ListClusters: {},
    count: {},
    CloneContainerToECR: { deny_if: [{ path: 'args.repositoryName', op: 'regex', value: '^prod-' }] },
    sleep: { require: [{ path: 'args.ms', op: 'lte', value: 50 }] },
  },
};
const EVERYTHING_POLICY = { version: '1', default: 'deny', tools: { echo: {}, 'get-sum': {} } };

const MCP_METHODS = [
  'initialize',
  'ping',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
  'sampling/createMessage',
  'elicitation/create',
  'roots/list',
  'tasks/get',
  'tasks/result',
  'tasks/list',
  'tasks/cancel',
  'notifications/initialized',
  'notifications/cancelled',
  'notifications/progress',
  'notifications/message',
  'notifications/roots/list_changed',
  'notifications/resources/updated',
  'notifications/tools/list_changed',
  'notifications/tasks/status',
];
const TOOL_NAMES = [
  'DescribeCluster',
  'ListClusters',
  'count',
  'CloneContainerToECR',
  'sleep',
  'DeleteCluster',
  'crash',
  'add-tool',
];
const EXPOSED_NAMES = [
  ...TOOL_NAMES,
  ...TOOL_NAMES.map((n) => `toy__${n}`),
  'everything__echo',
  'everything__get-sum',
  'everything__nope',
];
const PROMPT_NAMES = [
  'simple-prompt',
  'args-prompt',
  'everything__simple-prompt',
  'everything__args-prompt',
  'everything__completable-prompt',
];
const URIS = [
  'demo://resource/static/document/architecture.md',
  'demo://resource/dynamic/text/1',
  'file:///etc/passwd',
  '',
];

/** A value JSON.stringify cannot produce: spliced into the body text as written (huge or odd numbers, deep arrays). */
const RAW = '\u0000raw:';
const rawJson = (text: string): string => `${RAW}${text}`;
function serialize(value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  return text.replace(
    /"\\u0000raw:((?:[^"\\]|\\.)*)"/g,
    (_all, raw: string) => JSON.parse(`"${raw}"`) as string,
  );
}

const oddNumber = fc
  .constantFrom(
    '1e400',
    '-1e400',
    '1e-400',
    '-0',
    '123456789012345678901234567890',
    '9007199254740993',
    '0.5',
    '1E2',
    '-9007199254740993',
  )
  .map(rawJson);
const deepArray = fc
  .integer({ min: 1, max: 300 })
  .map((depth) => rawJson(`${'['.repeat(depth)}${']'.repeat(depth)}`));
const hostileString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'hasOwnProperty',
    '',
    '\u0000',
    '\ud800',
    'x'.repeat(5000),
  ),
);
const leaf = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_VALUE, Number.MIN_VALUE),
  hostileString,
  oddNumber,
  deepArray,
);
const { value: hostileValue } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(hostileString, tie('value'), { maxKeys: 4 }),
  ),
}));
const sometimes = <T>(known: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> =>
  fc.oneof({ weight: 3, arbitrary: known }, { weight: 1, arbitrary: hostileValue });

const params = fc.oneof(
  hostileValue,
  fc.record(
    {
      name: sometimes(fc.oneof(fc.constantFrom(...EXPOSED_NAMES, ...PROMPT_NAMES), hostileString)),
      arguments: sometimes(fc.dictionary(hostileString, hostileValue, { maxKeys: 4 })),
      uri: sometimes(fc.oneof(fc.constantFrom(...URIS), hostileString)),
      cursor: hostileValue,
      level: sometimes(fc.constantFrom('debug', 'info', 'emergency', 'loud')),
      ref: sometimes(
        fc.record(
          {
            type: fc.constantFrom('ref/prompt', 'ref/resource', 'ref/other'),
            name: hostileValue,
            uri: hostileValue,
          },
          { requiredKeys: ['type'] },
        ),
      ),
      argument: hostileValue,
      requestId: hostileValue,
      progressToken: hostileValue,
      progress: hostileValue,
      taskId: hostileValue,
      _meta: sometimes(fc.record({ progressToken: hostileValue }, { requiredKeys: [] })),
    },
    { requiredKeys: [] },
  ),
);
const requestId = fc.oneof(
  { weight: 4, arbitrary: fc.integer() },
  { weight: 3, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom(null, true, 1.5, {}, [], -0) },
  { weight: 1, arbitrary: oddNumber },
);
const message = fc.record(
  {
    jsonrpc: fc.oneof({ weight: 9, arbitrary: fc.constant('2.0') }, { weight: 1, arbitrary: hostileValue }),
    method: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...MCP_METHODS) },
      { weight: 1, arbitrary: hostileString },
      { weight: 1, arbitrary: hostileValue },
    ),
    id: requestId,
    params,
    result: hostileValue,
    error: hostileValue,
  },
  { requiredKeys: ['jsonrpc', 'method'] },
);
/** Mostly requests (id present, no result or error), with notifications, responses and small batches mixed in. */
const body = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.tuple(message, requestId).map(([m, id]) =>
      serialize({
        jsonrpc: m.jsonrpc,
        method: m.method,
        id,
        ...('params' in m ? { params: m.params } : {}),
      }),
    ),
  },
  { weight: 2, arbitrary: message.map((m) => serialize(m)) },
  { weight: 1, arbitrary: fc.array(message, { minLength: 0, maxLength: 4 }).map((ms) => serialize(ms)) },
);

/** Mostly the session's own headers; sometimes a wrong Accept, Content-Type or protocol version. */
const sessionHeaders = fc.oneof(
  { weight: 12, arbitrary: fc.constant({}) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Record<string, string>>(
      { accept: 'application/json' },
      { accept: '*/*' },
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/jsonx' },
      { 'mcp-protocol-version': '1999-01-01' },
      { 'mcp-protocol-version': '' },
    ),
  },
);

describe('hostile JSON-RPC bodies on /mcp and /mcp/<server>', () => {
  let gateway: TestGateway;
  const sessions: RawSession[] = [];

  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'toy.json': TOY_POLICY, 'everything.json': EVERYTHING_POLICY },
      config: {
        servers: { toy: toyServer('toy.json'), everything: everythingServer('everything.json') },
        http: { max_body_bytes: 256 * 1024 },
      },
    });
  }, 60_000);

  afterAll(async () => {
    for (const session of sessions) await session.close().catch(() => undefined);
    await gateway?.stop();
  });

  async function stillServes(path: string): Promise<void> {
    const health = await fetch(`${gateway.url}/healthz`);
    expect(health.status).toBe(200);
    const client = await connectClient(`${gateway.url}${path}`);
    const names = await client
      .listTools()
      .then((listed) => listed.tools.map((t) => t.name))
      .finally(() => client.close());
    expect(names).toEqual(
      expect.arrayContaining([path === '/mcp' ? 'toy__DescribeCluster' : 'DescribeCluster']),
    );
  }

  const sessionless = {
    'arbitrary bytes': fc.uint8Array({ maxLength: 512 }),
    'arbitrary strings': fc.string({ unit: 'binary', maxLength: 256 }),
    'fc.json()': fc.json({ maxDepth: 4 }),
    'fc.jsonValue() serialized': fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    'fc.anything() serialized': fc.anything({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? String(v)),
    'JSON-RPC-shaped messages': body,
  } satisfies Record<string, fc.Arbitrary<string | Uint8Array>>;

  for (const path of ['/mcp', '/mcp/toy']) {
    for (const [label, arbitrary] of Object.entries(sessionless)) {
      it(`answers ${label} sent to ${path} without a session with a 4xx JSON-RPC error`, async () => {
        await fc.assert(
          fc.asyncProperty(
            arbitrary,
            fc.constantFrom('application/json', 'text/plain', 'application/json; charset=utf-16'),
            async (sent, contentType) => {
              const answer = await postRaw(`${gateway.url}${path}`, sent, { 'content-type': contentType });
              const text = typeof sent === 'string' ? sent : Buffer.from(sent).toString('utf8');
              expect(answerProblem(answer, text)).toBeUndefined();
              expect(answer.status).toBeGreaterThanOrEqual(400);
              expect(answer.status).toBeLessThan(500);
              expect(answer.sessionId).toBeUndefined();
            },
          ),
          { numRuns: 100 },
        );
        await stillServes(path);
      });
    }
  }

  for (const path of ['/mcp', '/mcp/toy']) {
    it(`answers arbitrary JSON-RPC messages inside an initialized session on ${path} per the contract`, async () => {
      const session = await openRawSession(`${gateway.url}${path}`);
      sessions.push(session);
      let statuses: Record<number, number> = {};
      await fc.assert(
        fc.asyncProperty(body, sessionHeaders, async (sent, headers) => {
          const answer = await session.post(sent, headers);
          statuses = { ...statuses, [answer.status]: (statuses[answer.status] ?? 0) + 1 };
          expect(answerProblem(answer, sent)).toBeUndefined();
        }),
        { numRuns: 500 },
      );
      // Every kind of answer was exercised, not only parse errors.
      expect(Object.keys(statuses)).toEqual(expect.arrayContaining(['200', '202', '400']));
      // The very session that took the abuse still works.
      const list = await session.post(JSON.stringify({ jsonrpc: '2.0', id: 'after', method: 'tools/list' }));
      expect(answerProblem(list, '{"jsonrpc":"2.0","id":"after","method":"tools/list"}')).toBeUndefined();
      expect(list.text).toContain('DescribeCluster');
      await stillServes(path);
    }, 60_000);
  }

  it('answers a malformed initialize inside a session with Invalid params, not an internal error carrying a raw validation dump', async () => {
    const session = await openRawSession(`${gateway.url}/mcp/toy`);
    sessions.push(session);
    const sent = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'initialize', params: {} });
    const answer = await session.post(sent);
    expect(answerProblem(answer, sent)).toBeUndefined();
    const [response] = answer.messages;
    const error = isObject(response) && isObject(response.error) ? response.error : {};
    expect({ code: error.code }, String(error.message)).toEqual({ code: -32602 });
    expect(String(error.message)).not.toMatch(/^\s*\[/);
  });

  it('tells a client whose first request is an initialize with invalid params what is wrong with them', async () => {
    const sent = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {} },
    });
    const answer = await postRaw(`${gateway.url}/mcp/toy`, sent);
    expect(answerProblem(answer, sent)).toBeUndefined();
    expect(answer.status).toBe(400);
    const [response] = answer.messages;
    const message = isObject(response) && isObject(response.error) ? String(response.error.message) : '';
    // Not "start with an initialize request": it did. The answer should name the missing clientInfo.
    expect(message).toMatch(/clientInfo/);
  });

  it('answers initialize requests with hostile params and capabilities with a result or a 4xx, never 5xx', async () => {
    const initialize = fc.record({
      protocolVersion: fc.oneof(
        fc.constantFrom(...SUPPORTED_PROTOCOL_VERSIONS),
        fc.string({ maxLength: 12 }),
      ),
      capabilities: fc.oneof(
        {
          weight: 1,
          arbitrary: fc.dictionary(
            fc.constantFrom('roots', 'sampling', 'elicitation', 'tasks', 'experimental', '__proto__', 'x'),
            hostileValue,
            { maxKeys: 4 },
          ),
        },
        {
          weight: 3,
          arbitrary: fc.record(
            {
              roots: fc.record({ listChanged: fc.boolean() }, { requiredKeys: [] }),
              sampling: fc.dictionary(hostileString, fc.constant({}), { maxKeys: 2 }),
              elicitation: fc.constantFrom({}, { form: {} }, { url: {} }),
              experimental: fc.dictionary(
                hostileString,
                fc.dictionary(hostileString, hostileValue, { maxKeys: 2 }),
                { maxKeys: 2 },
              ),
              [String.fromCharCode(0)]: hostileValue,
            },
            { requiredKeys: [] },
          ),
        },
        {
          weight: 1,
          arbitrary: fc
            .constantFrom(
              '{"__proto__":{"sampling":{}},"roots":{}}',
              '{"constructor":{"prototype":{"x":1}}}',
              '{"experimental":{"__proto__":{"polluted":true}}}',
            )
            .map(rawJson),
        },
      ),
      clientInfo: fc.record(
        { name: hostileString, version: hostileString, title: hostileValue },
        { requiredKeys: ['name', 'version'] },
      ),
    });
    await fc.assert(
      fc.asyncProperty(initialize, async (initParams) => {
        const sent = serialize({ jsonrpc: '2.0', id: 1, method: 'initialize', params: initParams });
        const answer = await postRaw(`${gateway.url}/mcp/toy`, sent);
        expect(answerProblem(answer, sent)).toBeUndefined();
        if (answer.status === 200) {
          const [response] = answer.messages;
          expect(
            isObject(response) &&
              isObject(response.result) &&
              typeof response.result.protocolVersion === 'string',
          ).toBe(true);
        }
        if (answer.sessionId) {
          const res = await fetch(`${gateway.url}/mcp/toy`, {
            method: 'DELETE',
            headers: { 'mcp-session-id': answer.sessionId },
          });
          await res.text();
        }
      }),
      { numRuns: 16 },
    );
    await stillServes('/mcp/toy');
  }, 60_000);
});
