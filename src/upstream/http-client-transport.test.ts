import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { closeServers } from '../../test/support/http-servers.js';
import { NodeStreamableClientTransport } from './http-client-transport.js';

const servers: Server[] = [];
afterEach(() => closeServers(servers));

interface Seen {
  method: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A real HTTP server standing in for a remote MCP server; `answer` writes each response. */
async function upstream(
  answer: (seen: Seen, res: ServerResponse) => void,
): Promise<{ url: URL; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const one = { method: req.method ?? '', headers: req.headers, body };
      seen.push(one);
      answer(one, res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`), seen };
}

const ping = (id: number): JSONRPCMessage => ({ jsonrpc: '2.0', id, method: 'ping' });

describe('NodeStreamableClientTransport (Streamable HTTP client on node:http)', () => {
  it('reads a JSON answer, keeps the session id, and sends it back with the protocol version and configured headers', async () => {
    const { url, seen } = await upstream((one, res) => {
      const id = (JSON.parse(one.body) as { id: number }).id;
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'S-9' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id, result: {} }));
    });
    const transport = new NodeStreamableClientTransport(url, { 'x-api-key': 'k1' });
    const received: JSONRPCMessage[] = [];
    transport.onmessage = (m) => received.push(m);
    await transport.send(ping(1));
    transport.setProtocolVersion('2025-11-25');
    await transport.send(ping(2));
    expect(received).toEqual([
      { jsonrpc: '2.0', id: 1, result: {} },
      { jsonrpc: '2.0', id: 2, result: {} },
    ]);
    expect(transport.sessionId).toBe('S-9');
    expect(seen[0]?.headers.accept).toBe('application/json, text/event-stream');
    expect(seen[0]?.headers['mcp-session-id']).toBeUndefined();
    expect(seen[1]?.headers).toMatchObject({
      'mcp-session-id': 'S-9',
      'mcp-protocol-version': '2025-11-25',
      'x-api-key': 'k1',
    });
    await transport.close();
  });

  it('reads an SSE answer: requests and notifications before the result, comments and multi-line data', async () => {
    const { url } = await upstream((_one, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': keepalive\n\n');
      res.write('event: message\nid: 1\ndata: {"jsonrpc":"2.0","method":"notifications/progress",');
      res.write('\ndata: "params":{"progressToken":1,"progress":1}}\n\n');
      res.write('data: {"jsonrpc":"2.0","id":"s1","method":"roots/list"}\r\n\r\n');
      setTimeout(() => res.end('data: {"jsonrpc":"2.0","id":3,"result":{"ok":true}}\n\n'), 20);
    });
    const transport = new NodeStreamableClientTransport(url);
    const received: JSONRPCMessage[] = [];
    transport.onmessage = (m) => received.push(m);
    await transport.send(ping(3));
    while (received.length < 3) await new Promise((r) => setTimeout(r, 5));
    expect(received).toEqual([
      { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } },
      { jsonrpc: '2.0', id: 's1', method: 'roots/list' },
      { jsonrpc: '2.0', id: 3, result: { ok: true } },
    ]);
    await transport.close();
  });

  it('fails the send with the status and body of a non-2xx answer, and takes a 202 as done', async () => {
    const { url } = await upstream((one, res) => {
      if (one.body.includes('"method":"notifications/')) {
        res.writeHead(202);
        res.end();
        return;
      }
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('upstream exploded');
    });
    const transport = new NodeStreamableClientTransport(url);
    const errors: Error[] = [];
    transport.onerror = (e) => errors.push(e);
    await expect(transport.send(ping(4))).rejects.toThrow(
      'Error POSTing to endpoint (HTTP 500): upstream exploded',
    );
    expect(errors).toHaveLength(1);
    await expect(
      transport.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 4 } }),
    ).resolves.toBeUndefined();
    await transport.close();
    await expect(transport.send(ping(5))).rejects.toThrow('closed');
  });

  it('opens the GET stream after notifications/initialized, and takes 405 as "no such stream"', async () => {
    let gets = 0;
    const { url } = await upstream((one, res) => {
      if (one.method === 'GET') {
        gets += 1;
        if (gets === 1) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n');
          return;
        }
        res.writeHead(405);
        res.end();
        return;
      }
      res.writeHead(202);
      res.end();
    });
    const transport = new NodeStreamableClientTransport(url);
    const received: JSONRPCMessage[] = [];
    transport.onmessage = (m) => received.push(m);
    await transport.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    while (received.length < 1) await new Promise((r) => setTimeout(r, 5));
    expect(received).toEqual([{ jsonrpc: '2.0', method: 'notifications/tools/list_changed' }]);
    expect(gets).toBe(1);
    await transport.close();
  });
});
