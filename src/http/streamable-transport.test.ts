import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { closeServers } from '../../test/support/http-servers.js';
import { MAX_BATCH_SIZE, NodeStreamableTransport } from './streamable-transport.js';

const HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
};

interface Harness {
  url: string;
  transport: NodeStreamableTransport;
  received: JSONRPCMessage[];
  errors: Error[];
}

const servers: Server[] = [];
afterEach(() => closeServers(servers));

/** A real HTTP server whose one session is the transport; the test plays the MCP server through `respond`. */
async function harness(
  respond: (message: JSONRPCMessage, transport: NodeStreamableTransport) => void,
  options: { sseAfterMs?: number; keepAliveMs?: number } = {},
): Promise<Harness> {
  const transport = new NodeStreamableTransport({ sessionId: 'S1', ...options });
  const received: JSONRPCMessage[] = [];
  const errors: Error[] = [];
  transport.onmessage = (message) => {
    received.push(message);
    respond(message, transport);
  };
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      void transport
        .handleRequest(req, res, text ? JSON.parse(text) : undefined)
        .catch((e: Error) => errors.push(e));
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, transport, received, errors };
}

function request(id: number | string, method = 'tools/call'): JSONRPCMessage {
  return { jsonrpc: '2.0', id, method, params: {} };
}

/** Answers every request at once with its own id in the result. */
function echo(message: JSONRPCMessage, transport: NodeStreamableTransport): void {
  if ('method' in message && 'id' in message)
    void transport.send({ jsonrpc: '2.0', id: message.id, result: { echoed: message.id } });
}

function sseData(text: string): unknown[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => JSON.parse(line.slice(6)) as unknown);
}

describe('NodeStreamableTransport (Streamable HTTP on node:http)', () => {
  it('answers a request ready at once as plain JSON, with the session id header', async () => {
    const h = await harness(echo);
    const res = await fetch(h.url, { method: 'POST', headers: HEADERS, body: JSON.stringify(request(7)) });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('mcp-session-id')).toBe('S1');
    expect(await res.json()).toEqual({ jsonrpc: '2.0', id: 7, result: { echoed: 7 } });
  });

  it('answers a batch with an array once every request in it has its answer', async () => {
    const h = await harness((message, transport) => {
      // The second request is answered first: order of answers follows completion.
      if ('id' in message && message.id === 2) echo(message, transport);
      if ('id' in message && message.id === 1) setTimeout(() => echo(message, transport), 50);
    });
    const res = await fetch(h.url, {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify([request(1), request(2), { jsonrpc: '2.0', method: 'notifications/x' }]),
    });
    const body = (await res.json()) as { id: number }[];
    expect(body.map((m) => m.id)).toEqual([2, 1]);
    expect(h.received).toHaveLength(3);
  });

  it('accepts notifications and responses alone with 202 and no body', async () => {
    const h = await harness(() => undefined);
    const res = await fetch(h.url, {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    expect(res.status).toBe(202);
    expect(await res.text()).toBe('');
    expect(h.received).toEqual([{ jsonrpc: '2.0', method: 'notifications/initialized' }]);
  });

  it('switches to SSE when a related notification must go first, and sends it before the answer', async () => {
    const h = await harness((message, transport) => {
      if (!('id' in message) || !('method' in message)) return;
      void transport.send(
        { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } },
        { relatedRequestId: message.id },
      );
      setTimeout(() => echo(message, transport), 20);
    });
    const res = await fetch(h.url, { method: 'POST', headers: HEADERS, body: JSON.stringify(request('p')) });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    expect(res.headers.get('mcp-session-id')).toBe('S1');
    const events = sseData(await res.text());
    expect(events).toEqual([
      { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } },
      { jsonrpc: '2.0', id: 'p', result: { echoed: 'p' } },
    ]);
  });

  it('streams an answer that takes longer than sseAfterMs, with keep-alive comments meanwhile', async () => {
    const h = await harness((message, transport) => setTimeout(() => echo(message, transport), 1200), {
      sseAfterMs: 50,
      keepAliveMs: 100,
    });
    const started = Date.now();
    const res = await fetch(h.url, { method: 'POST', headers: HEADERS, body: JSON.stringify(request(3)) });
    // Headers arrive long before the answer: an HTTP client waiting for headers is not left hanging.
    expect(Date.now() - started).toBeLessThan(1000);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const text = await res.text();
    expect(text).toContain(': keepalive');
    expect(sseData(text)).toEqual([{ jsonrpc: '2.0', id: 3, result: { echoed: 3 } }]);
  });

  it('keeps a batch answer that was ready before the switch to SSE (slow sibling, or progress first)', async () => {
    const slow = await harness(
      (message, transport) => {
        if ('id' in message && message.id === 'quick') echo(message, transport);
        if ('id' in message && message.id === 'slow') setTimeout(() => echo(message, transport), 150);
      },
      { sseAfterMs: 50 },
    );
    const first = await fetch(slow.url, {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify([request('quick'), request('slow')]),
    });
    expect(first.headers.get('content-type')).toBe('text/event-stream');
    expect(sseData(await first.text())).toEqual([
      { jsonrpc: '2.0', id: 'quick', result: { echoed: 'quick' } },
      { jsonrpc: '2.0', id: 'slow', result: { echoed: 'slow' } },
    ]);

    const progress = await harness((message, transport) => {
      if (!('id' in message) || !('method' in message)) return;
      if (message.id === 'a') return echo(message, transport);
      void transport.send(
        { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'b', progress: 1 } },
        { relatedRequestId: message.id },
      );
      setTimeout(() => echo(message, transport), 20);
    });
    const second = await fetch(progress.url, {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify([request('a'), request('b')]),
    });
    const ids = sseData(await second.text()).map((m) => (m as { id?: string }).id ?? 'progress');
    expect(ids).toEqual(['a', 'progress', 'b']);
  });

  it('refuses a request id that is still in flight, or twice in one batch, and leaves the first one be', async () => {
    const h = await harness((message, transport) => {
      if ('id' in message && 'method' in message) setTimeout(() => echo(message, transport), 100);
    });
    const first = fetch(h.url, { method: 'POST', headers: HEADERS, body: JSON.stringify(request(5)) });
    while (h.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    const again = await fetch(h.url, { method: 'POST', headers: HEADERS, body: JSON.stringify(request(5)) });
    expect(again.status).toBe(400);
    expect(await again.text()).toContain('request id 5 is already in use');
    const twice = await fetch(h.url, {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify([request(6), request(6)]),
    });
    expect(twice.status).toBe(400);
    expect(await (await first).json()).toEqual({ jsonrpc: '2.0', id: 5, result: { echoed: 5 } });
    expect(h.received).toHaveLength(1);
  });

  it('ends the response of a request the client cancelled (it gets no answer), so nothing stays open', async () => {
    const h = await harness(() => undefined);
    const pending = fetch(h.url, { method: 'POST', headers: HEADERS, body: JSON.stringify(request(7)) });
    while (h.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    const cancel = await fetch(h.url, {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 7 } }),
    });
    expect(cancel.status).toBe(202);
    const ended = await pending;
    expect(await ended.text()).toBe('');
    expect(h.received).toHaveLength(2); // the server still hears of the cancellation
    await expect(h.transport.send({ jsonrpc: '2.0', id: 7, result: {} })).rejects.toThrow('No connection');
  });

  it('answers a batch that cancels a request it carries itself (the rest is answered, nothing stays open)', async () => {
    // The MCP server never answers a request once it hears it cancelled (as the SDK's Protocol does).
    const h = await harness((message, transport) => {
      if ('id' in message && 'method' in message && message.id !== 'a') echo(message, transport);
    });
    const res = await fetch(h.url, {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify([
        request('a'),
        { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'a' } },
        request('b', 'ping'),
      ]),
      signal: AbortSignal.timeout(5000),
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    const answers = res.headers.get('content-type')?.includes('event-stream')
      ? sseData(text)
      : JSON.parse(text);
    expect(answers).toEqual([{ jsonrpc: '2.0', id: 'b', result: { echoed: 'b' } }]);
  });

  it('sends messages tied to no open request on the GET stream, and allows only one GET stream', async () => {
    const h = await harness(() => undefined);
    const controller = new AbortController();
    const get = await fetch(h.url, {
      headers: { accept: 'text/event-stream' },
      signal: controller.signal,
    });
    expect(get.headers.get('content-type')).toBe('text/event-stream');
    const second = await fetch(h.url, { headers: { accept: 'text/event-stream' } });
    expect(second.status).toBe(409);
    await h.transport.send({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    const reader = get.body!.getReader();
    const { value } = await reader.read();
    expect(sseData(new TextDecoder().decode(value))).toEqual([
      { jsonrpc: '2.0', method: 'notifications/tools/list_changed' },
    ]);
    controller.abort();
  });

  it('fails a request to the client at once when it has nowhere to go (no open request, no GET stream)', async () => {
    const h = await harness(() => undefined);
    await expect(
      h.transport.send({ jsonrpc: '2.0', id: 'srv-1', method: 'sampling/createMessage', params: {} }),
    ).rejects.toThrow('No connection to send sampling/createMessage on');
    // A notification with nowhere to go is dropped quietly.
    await expect(
      h.transport.send({ jsonrpc: '2.0', method: 'notifications/message', params: {} }),
    ).resolves.toBeUndefined();
  });

  it('refuses what the SDK transport refuses, with the same statuses, and passes nothing on', async () => {
    const h = await harness(echo);
    const post = (headers: Record<string, string>, body: unknown): Promise<Response> =>
      fetch(h.url, { method: 'POST', headers, body: JSON.stringify(body) });
    expect((await post({ ...HEADERS, accept: 'application/json' }, request(1))).status).toBe(406);
    expect((await post({ ...HEADERS, 'content-type': 'text/plain' }, request(1))).status).toBe(415);
    const notRpc = await post(HEADERS, { hello: 'world' });
    expect(notRpc.status).toBe(400);
    expect(((await notRpc.json()) as { error: { code: number } }).error.code).toBe(-32700);
    const tooMany = Array.from({ length: MAX_BATCH_SIZE + 1 }, (_, i) => request(i));
    expect((await post(HEADERS, tooMany)).status).toBe(400);
    const version = await post({ ...HEADERS, 'mcp-protocol-version': '1999-01-01' }, request(1));
    expect(version.status).toBe(400);
    expect(await version.text()).toContain('Unsupported protocol version: 1999-01-01');
    expect((await fetch(h.url, { method: 'PUT', headers: HEADERS, body: '{}' })).status).toBe(405);
    expect((await fetch(h.url, { headers: { accept: 'application/json' } })).status).toBe(406);
    expect(h.received).toEqual([]);
  });

  it('answers unanswered requests with a connection-closed error when the session closes', async () => {
    const h = await harness(() => undefined);
    const pending = fetch(h.url, { method: 'POST', headers: HEADERS, body: JSON.stringify(request(9)) });
    while (h.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    await h.transport.close();
    const body = (await (await pending).json()) as { id: number; error: { code: number; message: string } };
    expect(body.id).toBe(9);
    expect(body.error.code).toBe(-32000);
    expect(body.error.message).toContain('session was closed');
  });

  it('cancels a request whose client went away (as if it had said so), refuses its late answer, and forgets it', async () => {
    const h = await harness(() => undefined);
    const controller = new AbortController();
    const pending = fetch(h.url, {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify(request(11)),
      signal: controller.signal,
    }).catch(() => undefined);
    while (h.received.length === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    await pending;
    while (h.received.length < 2) await new Promise((r) => setTimeout(r, 5));
    expect(h.received[1]).toEqual({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: 11, reason: 'the client disconnected before the answer was written' },
    });
    await expect(h.transport.send({ jsonrpc: '2.0', id: 11, result: {} })).rejects.toThrow(
      'No connection established for request ID: 11',
    );
  });

  it('ends the session on DELETE', async () => {
    let closedWith: string | undefined;
    const transport = new NodeStreamableTransport({
      sessionId: 'S2',
      onsessionclosed: (id) => {
        closedWith = id;
      },
    });
    let onclose = false;
    transport.onclose = () => (onclose = true);
    const server = createServer((req, res) => void transport.handleRequest(req, res));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    expect((await fetch(url, { method: 'DELETE' })).status).toBe(200);
    expect(closedWith).toBe('S2');
    expect(onclose).toBe(true);
    const after = await fetch(url, { method: 'POST', headers: HEADERS, body: JSON.stringify(request(1)) });
    expect(after.status).toBe(404);
  });
});
