/**
 * Nothing reaches an upstream without passing the policy: only the methods on the allow-list
 * (src/gateway/methods.ts) cross the gateway, in either direction, spelled exactly. A recording upstream
 * (test/fixtures/recording-server.mjs) writes down every message it receives, so each test proves what never
 * reached it, and the positive controls prove that what is allowed still does. Every protocol-level refusal
 * leaves exactly one audit event of bounded size.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ErrorCode,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
  ResultSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { AuditLog } from '../../src/audit/log.js';
import { ALLOWED_METHODS } from '../../src/gateway/methods.js';
import {
  MAX_MESSAGE_CHARS,
  MAX_METHOD_CHARS,
  PROTOCOL_EVENT_MAX_BYTES,
} from '../../src/gateway/protocol-refusal.js';
import { MAX_BATCH_SIZE } from '../../src/http/streamable-transport.js';
import { cliCommand } from '../support/cli.js';
import { startTestGateway } from '../support/gateway.js';
import type { TestGateway } from '../support/gateway.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from '../support/redis.js';
import { isObject, openRawSession } from './raw-mcp.js';
import type { RawSession } from './raw-mcp.js';
import { reachedUpstream, recordingServer, waitForRecorded } from './recording.js';

const ALLOW_ALL = { version: '1', default: 'allow' };
const AGENT = { authorization: 'Bearer agent-token-0123456789' };
const REFUSED_METHODS = [
  'Tools/Call',
  'tools/CALL',
  'x/anything',
  'TOOLS/LIST',
  'tools/call ',
  'toString',
  '__proto__',
];

/** A string no other test uses, to find (or not find) a message in the recordings. */
const marker = (label: string): string => `${label}-${randomUUID()}`;

function errorOf(messages: unknown[]): { code: number; message: string } | undefined {
  const [first] = messages;
  if (!isObject(first) || !isObject(first.error)) return undefined;
  return first.error as { code: number; message: string };
}

describe('only allow-listed methods cross the gateway', () => {
  let gateway: TestGateway;
  let dir: string;
  let recFile: string;
  let otherFile: string;
  const sessions: RawSession[] = [];
  const clients: Client[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-allowlist-'));
    recFile = path.join(dir, 'rec.jsonl');
    otherFile = path.join(dir, 'other.jsonl');
    gateway = await startTestGateway({
      policies: { 'allow-all.json': ALLOW_ALL },
      config: {
        servers: {
          rec: recordingServer('allow-all.json', recFile),
          other: recordingServer('allow-all.json', otherFile),
        },
        grants: [{ id: 'agent', owner: 'agent-owner', token_env: 'AGENT_TOKEN' }],
        http: { max_body_bytes: 2 * 1024 * 1024 },
      },
      env: { AGENT_TOKEN: 'agent-token-0123456789' },
    });
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) await client.close().catch(() => undefined);
    for (const session of sessions) await session.close().catch(() => undefined);
    await gateway?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function open(endpoint: string): Promise<RawSession> {
    const session = await openRawSession(`${gateway.url}${endpoint}`, AGENT);
    sessions.push(session);
    return session;
  }

  async function connect(endpoint: string, seen: Seen = newSeen()): Promise<{ client: Client; seen: Seen }> {
    const client = new Client(
      { name: 'allowlist', version: '1' },
      { capabilities: { roots: { listChanged: true }, sampling: {} } },
    );
    instrument(client, seen);
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${gateway.url}${endpoint}`), {
        requestInit: { headers: AGENT },
      }),
    );
    clients.push(client);
    return { client, seen };
  }

  /** The protocol audit events of one session, once `count` of them are in (then a moment more, for extras). */
  async function protocolEvents(sessionId: string | undefined, count: number): Promise<AuditEvent[]> {
    const read = async (): Promise<AuditEvent[]> =>
      (await gateway.services.audit.query({ type: 'protocol', limit: 10_000 })).filter(
        (e) => sessionId === undefined || e.session === sessionId,
      );
    const deadline = Date.now() + 10_000;
    while ((await read()).length < count && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    await new Promise((resolve) => setTimeout(resolve, 150));
    return read();
  }

  /**
   * Runs a tool call and waits until the upstream has it: a message posted before it, had it been relayed,
   * would have reached the upstream first (a relayed notification is written at once; a call walks the pipeline).
   */
  async function barrier(session: RawSession, file: string, echo = 'echo'): Promise<void> {
    const label = marker('barrier');
    const answer = await session.post(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 'barrier',
        method: 'tools/call',
        params: { name: echo, arguments: { label } },
      }),
    );
    expect(answer.status).toBe(200);
    await waitForRecorded(file, (m) => JSON.stringify(m).includes(label));
  }

  describe('client → server', () => {
    for (const endpoint of ['/mcp/rec', '/mcp']) {
      const echo = endpoint === '/mcp' ? 'rec__echo' : 'echo';

      it(`never forwards a tools/call sent as a notification on ${endpoint}, answers it 202, and audits it once`, async () => {
        const session = await open(endpoint);
        const secret = marker('notified-call');
        const answer = await session.post(
          JSON.stringify({
            jsonrpc: '2.0',
            method: 'tools/call',
            params: { name: echo, arguments: { secret } },
          }),
        );
        expect(answer.status).toBe(202);
        expect(answer.text).toBe('');
        // Inside a batch too, next to a request that is answered.
        const batched = marker('batched-call');
        const batch = await session.post(
          JSON.stringify([
            { jsonrpc: '2.0', method: 'tools/call', params: { name: echo, arguments: { batched } } },
            { jsonrpc: '2.0', id: 1, method: 'ping' },
          ]),
        );
        expect(batch.status).toBe(200);
        await barrier(session, recFile, echo);
        expect(await reachedUpstream([recFile, otherFile], secret)).toBe(false);
        expect(await reachedUpstream([recFile, otherFile], batched)).toBe(false);
        // The same tool called as a request does run: the refusal is about the shape, not the tool.
        const ran = await session.post(
          JSON.stringify({
            jsonrpc: '2.0',
            id: 2,
            method: 'tools/call',
            params: { name: echo, arguments: { secret } },
          }),
        );
        expect(JSON.stringify(ran.messages)).toContain(secret);
        expect(await reachedUpstream([recFile], secret)).toBe(true);

        const events = await protocolEvents(session.id, 2);
        expect(events.map((e) => [e.reason, e.method, e.decision, e.grant])).toEqual([
          ['notification_refused', 'tools/call', 'deny', 'agent'],
          ['notification_refused', 'tools/call', 'deny', 'agent'],
        ]);
        expect(JSON.stringify(events)).not.toContain(secret);
      });

      it(`answers unknown and differently-cased methods on ${endpoint} with -32601 and never sends them upstream`, async () => {
        const session = await open(endpoint);
        const secret = marker('unknown-method');
        for (const [i, method] of REFUSED_METHODS.entries()) {
          const answer = await session.post(
            JSON.stringify({
              jsonrpc: '2.0',
              id: i + 1,
              method,
              params: { name: echo, arguments: { secret } },
            }),
          );
          expect(answer.status, method).toBe(200);
          expect(errorOf(answer.messages)?.code, `${method}: ${answer.text.slice(0, 300)}`).toBe(
            ErrorCode.MethodNotFound,
          );
        }
        await barrier(session, recFile, echo);
        expect(await reachedUpstream([recFile, otherFile], secret)).toBe(false);
        const events = await protocolEvents(session.id, REFUSED_METHODS.length);
        expect(events.map((e) => e.method)).toEqual(REFUSED_METHODS);
        expect(events.every((e) => e.reason === 'unknown_method')).toBe(true);
      });

      it(`refuses an unknown method from the SDK client on ${endpoint} with McpError -32601`, async () => {
        const { client } = await connect(endpoint);
        const secret = marker('sdk-unknown');
        const refused = client.request({ method: 'x/anything', params: { secret } }, ResultSchema);
        await expect(refused).rejects.toBeInstanceOf(McpError);
        await expect(refused).rejects.toMatchObject({ code: ErrorCode.MethodNotFound });
        expect(await reachedUpstream([recFile, otherFile], secret)).toBe(false);
      });
    }

    it('relays every allow-listed relayed request to the upstream (positive controls)', async () => {
      const { client } = await connect('/mcp/rec');
      const params: Record<string, Record<string, unknown>> = {
        'resources/list': {},
        'resources/templates/list': {},
        'resources/read': { uri: 'rec://one' },
        'resources/subscribe': { uri: 'rec://one' },
        'resources/unsubscribe': { uri: 'rec://one' },
        'prompts/list': {},
        'prompts/get': { name: 'greet' },
        'completion/complete': {
          ref: { type: 'ref/prompt', name: 'greet' },
          argument: { name: 'a', value: 'o' },
        },
        'logging/setLevel': { level: 'info' },
      };
      const relayed = Object.entries(ALLOWED_METHODS.clientRequests)
        .filter(([, entry]) => entry.passage === 'relayed')
        .map(([method]) => method);
      expect(relayed.sort()).toEqual(Object.keys(params).sort());
      for (const method of relayed) {
        const label = marker('relayed');
        await client.request({ method, params: { ...params[method], _meta: { label } } }, ResultSchema);
        await waitForRecorded(recFile, (m) => m.method === method && JSON.stringify(m).includes(label));
      }
      // Policed: tools/call and tools/list reach it through the pipeline.
      const label = marker('policed');
      const result = (await client.callTool({ name: 'echo', arguments: { label } })) as CallToolResult;
      expect(JSON.stringify(result.content)).toContain(label);
      await waitForRecorded(recFile, (m) => m.method === 'tools/call' && JSON.stringify(m).includes(label));
      // Answered by the gateway for this hop: ping, and the gateway's own tasks.
      await expect(client.ping()).resolves.toEqual({});
      await expect(
        client.request({ method: 'tasks/list', params: {} }, ResultSchema),
      ).resolves.toHaveProperty('tasks');
    });

    it('relays notifications/roots/list_changed to every upstream, and cancellation as its own cancel', async () => {
      const { client } = await connect('/mcp');
      const label = marker('roots-changed');
      await client.notification({ method: 'notifications/roots/list_changed', params: { _meta: { label } } });
      for (const file of [recFile, otherFile])
        await waitForRecorded(
          file,
          (m) => m.method === 'notifications/roots/list_changed' && JSON.stringify(m).includes(label),
        );

      const slowLabel = marker('slow');
      const controller = new AbortController();
      const call = client.callTool({ name: 'rec__slow', arguments: { ms: 30_000, slowLabel } }, undefined, {
        signal: controller.signal,
      });
      const forwarded = await waitForRecorded(
        recFile,
        (m) => m.method === 'tools/call' && JSON.stringify(m).includes(slowLabel),
      );
      controller.abort('changed my mind');
      await expect(call).rejects.toThrow();
      await waitForRecorded(
        recFile,
        (m) =>
          m.method === 'notifications/cancelled' &&
          isObject(m.params) &&
          m.params.requestId === forwarded.message.id,
      );
    });

    it("relays the client's progress on a request the upstream sent, under the upstream's token", async () => {
      const { client } = await connect('/mcp/rec');
      const token = marker('upstream-token');
      client.setRequestHandler(CreateMessageRequestSchema, async (request, extra) => {
        const progressToken = request.params._meta?.progressToken;
        if (progressToken !== undefined)
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: 1 },
          });
        return { role: 'assistant', content: { type: 'text', text: 'sampled' }, model: 'test' };
      });
      const result = (await client.callTool({
        name: 'ask',
        arguments: {
          method: 'sampling/createMessage',
          params: { messages: [], maxTokens: 5, _meta: { progressToken: token } },
        },
      })) as CallToolResult;
      expect(JSON.stringify(result.content)).toContain('sampled');
      await waitForRecorded(
        recFile,
        (m) =>
          m.method === 'notifications/progress' && isObject(m.params) && m.params.progressToken === token,
      );
    });
  });

  describe('server → client', () => {
    it('relays an allow-listed request (roots/list) to the client and answers an unknown one with -32601', async () => {
      const { client, seen } = await connect('/mcp/rec');
      client.setRequestHandler(ListRootsRequestSchema, async () => ({
        roots: [{ uri: 'file:///allowed-root' }],
      }));
      const roots = (await client.callTool({
        name: 'ask',
        arguments: { method: 'roots/list' },
      })) as CallToolResult;
      expect(JSON.stringify(roots.content)).toContain('file:///allowed-root');

      for (const method of ['x/evil', 'Roots/List', 'tools/call', 'sampling/createmessage', 'tasks/list']) {
        const answer = (await client.callTool({ name: 'ask', arguments: { method } })) as CallToolResult;
        const text = JSON.stringify(answer.content);
        expect(text, method).toContain(String(ErrorCode.MethodNotFound));
        expect(text, method).toContain('Method not found');
      }
      expect(seen.requests).toEqual([]);
    });

    it('relays allow-listed notifications to the client and drops unknown ones', async () => {
      const { client, seen } = await connect('/mcp/rec');
      const label = marker('log');
      const logs: string[] = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, async (n) => {
        logs.push(JSON.stringify(n.params.data));
      });
      // The client opens its GET stream (where unrelated notifications go) shortly after initializing: retry.
      const deadline = Date.now() + 10_000;
      while (!logs.some((l) => l.includes(label)) && Date.now() < deadline) {
        await client.callTool({
          name: 'tell',
          arguments: {
            notifications: [
              { method: 'x/evil', params: { label } },
              { method: 'Notifications/Message', params: { level: 'info', data: label } },
              { method: 'notifications/tasks/status', params: { taskId: 'upstream-own', status: 'working' } },
              { method: 'notifications/message', params: { level: 'info', data: label } },
            ],
          },
        });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(logs.some((l) => l.includes(label))).toBe(true);
      expect(seen.notifications).toEqual([]);
    });
  });

  describe('protocol refusals are audited once each, bounded', () => {
    const HUGE = 'M'.repeat(200 * 1024);

    function expectBounded(event: AuditEvent | undefined): void {
      expect(event).toBeDefined();
      expect(Buffer.byteLength(JSON.stringify(event))).toBeLessThan(PROTOCOL_EVENT_MAX_BYTES);
      expect(event?.method?.length ?? 0).toBeLessThanOrEqual(MAX_METHOD_CHARS);
      expect(event?.message?.length ?? 0).toBeLessThanOrEqual(MAX_MESSAGE_CHARS);
      expect(JSON.stringify(event)).not.toContain('P'.repeat(1000));
    }

    it('bad params, a task for a tool without task support, an unknown method: one event each', async () => {
      const session = await open('/mcp/rec');
      const bad = await session.post(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'tools/call',
          params: { name: 'echo', arguments: [1, 2] },
        }),
      );
      expect(errorOf(bad.messages)?.code).toBe(ErrorCode.InvalidParams);
      const task = await session.post(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 2,
          method: 'tools/call',
          params: { name: 'echo', arguments: {}, task: { ttl: 60_000 } },
        }),
      );
      expect(errorOf(task.messages)?.code).toBe(ErrorCode.MethodNotFound);
      const unknown = await session.post(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'x/probe' }));
      expect(errorOf(unknown.messages)?.code).toBe(ErrorCode.MethodNotFound);
      const events = await protocolEvents(session.id, 3);
      expect(events.map((e) => [e.reason, e.method, e.tool, e.server])).toEqual([
        ['invalid_params', 'tools/call', 'echo', 'rec'],
        ['task_not_supported', 'tools/call', 'echo', 'rec'],
        ['unknown_method', 'x/probe', '', 'rec'],
      ]);
      for (const event of events) expectBounded(event);
    });

    it('an oversized batch, duplicate ids and a non-JSON-RPC member: one event each, never forwarded', async () => {
      const session = await open('/mcp/rec');
      const secret = marker('batch');
      const oversized = Array.from({ length: MAX_BATCH_SIZE + 1 }, (_, i) => ({
        jsonrpc: '2.0',
        id: i + 1,
        method: 'tools/call',
        params: { name: 'echo', arguments: { secret } },
      }));
      expect((await session.post(JSON.stringify(oversized))).status).toBe(400);
      const duplicates = [1, 2].map(() => ({
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: { name: 'echo', arguments: { secret } },
      }));
      const duplicated = await session.post(JSON.stringify(duplicates));
      expect(duplicated.status).toBe(400);
      expect(errorOf(duplicated.messages)?.code).toBe(-32600);
      const notJsonRpc = await session.post(
        JSON.stringify([
          { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'echo', arguments: { secret } } },
          { secret },
        ]),
      );
      expect(notJsonRpc.status).toBe(400);
      expect(errorOf(notJsonRpc.messages)?.code).toBe(-32700);
      await barrier(session, recFile);
      expect(await reachedUpstream([recFile], secret)).toBe(false);
      const events = await protocolEvents(session.id, 3);
      expect(events.map((e) => [e.reason, e.method, e.server])).toEqual([
        ['batch_too_large', 'tools/call', 'rec'],
        ['duplicate_request_id', 'tools/call', 'rec'],
        ['invalid_message', 'tools/call', 'rec'],
      ]);
      for (const event of events) expectBounded(event);
    });

    it('keeps each event bounded whatever the size of the method, the tool name or the params', async () => {
      const session = await open('/mcp');
      const params = { name: 'P'.repeat(200 * 1024), arguments: { blob: 'P'.repeat(200 * 1024) } };
      const unknown = await session.post(JSON.stringify({ jsonrpc: '2.0', id: 1, method: HUGE, params }));
      expect(errorOf(unknown.messages)?.code).toBe(ErrorCode.MethodNotFound);
      // The answer is bounded too: the 200 KB name is not echoed back.
      expect(unknown.text.length).toBeLessThan(2048);
      expect((await session.post(JSON.stringify({ jsonrpc: '2.0', method: HUGE, params }))).status).toBe(202);
      const badParams = await session.post(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 2,
          method: 'tools/call',
          params: { name: params.name, arguments: 'P'.repeat(200 * 1024) },
        }),
      );
      expect(errorOf(badParams.messages)?.code).toBe(ErrorCode.InvalidParams);
      const surrogate = await session.post(
        JSON.stringify({ jsonrpc: '2.0', id: 3, method: `\ud800${HUGE}` }),
      );
      expect(errorOf(surrogate.messages)?.code).toBe(ErrorCode.MethodNotFound);
      const events = await protocolEvents(session.id, 4);
      expect(events.map((e) => e.reason)).toEqual([
        'unknown_method',
        'notification_refused',
        'invalid_params',
        'unknown_method',
      ]);
      for (const event of events) expectBounded(event);
      expect((await gateway.services.audit.verify()).ok).toBe(true);
    });
  });
});

interface Seen {
  /** Requests that reached the client without a handler of its own (nothing should). */
  requests: string[];
  /** Notifications that reached the client without a handler of its own (nothing should). */
  notifications: string[];
}

function newSeen(): Seen {
  return { requests: [], notifications: [] };
}

function instrument(client: Client, seen: Seen): void {
  client.fallbackRequestHandler = async (request) => {
    seen.requests.push(request.method);
    throw new McpError(ErrorCode.MethodNotFound, `client has no handler for ${request.method}`);
  };
  client.fallbackNotificationHandler = async (notification) => {
    // The gateway's own list_changed notifications (after a policy reload) are expected; nothing else is.
    if (!notification.method.endsWith('/list_changed')) seen.notifications.push(notification.method);
  };
}

describe('countersign stdio keeps the same allow-list', () => {
  it('never forwards a notification-shaped tools/call or an unknown method, and audits both', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-allowlist-stdio-'));
    const recFile = path.join(dir, 'rec.jsonl');
    const prefix = uniquePrefix('allowlist-stdio');
    await writeFile(path.join(dir, 'allow-all.json'), JSON.stringify(ALLOW_ALL));
    const configFile = path.join(dir, 'countersign.json');
    await writeFile(
      configFile,
      JSON.stringify({
        redis: { url: testRedisUrl(), prefix },
        data_dir: dir,
        servers: { rec: recordingServer('allow-all.json', recFile) },
        grants: [
          { id: 'ide', owner: 'carol', token_sha256: createHash('sha256').update('unused').digest('hex') },
        ],
      }),
    );
    const client = new Client(
      { name: 'ide', version: '1' },
      { capabilities: { roots: { listChanged: true } } },
    );
    try {
      await client.connect(
        new StdioClientTransport({
          command: process.execPath,
          args: cliCommand(['stdio', '--config', configFile, '--grant', 'ide']),
          cwd: dir,
          env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'warn' },
          stderr: 'ignore',
        }),
      );
      const secret = marker('stdio');
      await client.notification({ method: 'tools/call', params: { name: 'echo', arguments: { secret } } });
      const refused = client.request(
        { method: 'Tools/Call', params: { name: 'echo', arguments: { secret } } },
        ResultSchema,
      );
      await expect(refused).rejects.toMatchObject({ code: ErrorCode.MethodNotFound });
      const label = marker('stdio-barrier');
      await client.notification({ method: 'notifications/roots/list_changed', params: { _meta: { label } } });
      await waitForRecorded(recFile, (m) => JSON.stringify(m).includes(label));
      expect(await reachedUpstream([recFile], secret)).toBe(false);
      const ran = (await client.callTool({ name: 'echo', arguments: { secret } })) as CallToolResult;
      expect(JSON.stringify(ran.content)).toContain(secret);
      await client.close();

      const redis = await connectTestRedis();
      try {
        const log = new AuditLog({ redis, prefix });
        const deadline = Date.now() + 10_000;
        let events = await log.query({ type: 'protocol' });
        while (events.length < 2 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          events = await log.query({ type: 'protocol' });
        }
        expect(events.map((e) => [e.reason, e.method, e.grant, e.server])).toEqual([
          ['notification_refused', 'tools/call', 'ide', 'rec'],
          ['unknown_method', 'Tools/Call', 'ide', 'rec'],
        ]);
        await dropPrefix(redis, prefix);
      } finally {
        redis.disconnect();
      }
    } finally {
      await client.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
