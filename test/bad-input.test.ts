import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../src/audit/log.js';
import { connectClient, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { connectTestRedis } from './support/redis.js';

const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    DescribeCluster: { deny_if: [{ path: 'args.id', op: 'regex', value: '^(a+)+$' }] },
    count: { require: [{ path: 'args.constructor', op: 'exists' }] },
  },
};

describe('bad input gets a clear error and changes nothing else', () => {
  let gateway: TestGateway;
  let client: Client;
  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'p.json': POLICY },
      config: { servers: { toy: toyServer('p.json') }, max_argument_bytes: 2048 },
    });
    client = await connectClient(`${gateway.url}/mcp`);
  });
  afterAll(async () => {
    await client?.close();
    await gateway?.stop();
  });

  it('refuses oversized arguments with their size and the limit', async () => {
    const result = (await client.callTool({
      name: 'DescribeCluster',
      arguments: { id: 'x'.repeat(5000) },
    })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(result._meta?.['countersign/decision']).toMatchObject({ reason: 'arguments_too_large' });
    expect((result.content[0] as { text: string }).text).toContain('at most 2048');
  });

  it('does not resolve a condition path through the prototype (args.constructor is missing, not Object)', async () => {
    const result = (await client.callTool({ name: 'count', arguments: {} })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(result._meta?.['countersign/decision']).toMatchObject({ reason: 'require_failed' });
  });

  it('survives __proto__ and constructor keys in arguments without polluting prototypes', async () => {
    const args = JSON.parse(
      '{"id":"c1","__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
    ) as Record<string, unknown>;
    const result = (await client.callTool({ name: 'DescribeCluster', arguments: args })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('evaluates a catastrophic-backtracking regex in linear time', async () => {
    const started = performance.now();
    const result = (await client.callTool({
      name: 'DescribeCluster',
      arguments: { id: `${'a'.repeat(1500)}!` },
    })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    // A backtracking engine would take astronomically long on this input; any sane bound shows it did not.
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('answers malformed JSON-RPC inside a session with an error and keeps the session working', async () => {
    const init = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: LATEST_PROTOCOL_VERSION,
          capabilities: {},
          clientInfo: { name: 'raw', version: '1' },
        },
      }),
    });
    const sessionId = init.headers.get('mcp-session-id') ?? '';
    await init.text();
    const headers = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': LATEST_PROTOCOL_VERSION,
    };
    await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    const wrongParams = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 42 } }),
    });
    const wrongText = await wrongParams.text();
    expect(wrongText).toContain('"error"');
    expect(wrongText).toContain('-32602');
    const notRpc = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ hello: 'world' }),
    });
    expect(notRpc.status).toBe(400);
    const list = await fetch(`${gateway.url}/mcp`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list', params: {} }),
    });
    expect(await list.text()).toContain('DescribeCluster');
  });

  it('audits every refusal above', async () => {
    const redis = await connectTestRedis();
    const events = await new AuditLog({ redis, prefix: gateway.prefix }).query({ decision: 'deny' });
    redis.disconnect();
    expect(events.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['arguments_too_large', 'require_failed']),
    );
  });
});
