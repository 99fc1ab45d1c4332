import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, everythingServer, startTestGateway, toyServer } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';

const READONLY = {
  version: '1',
  default: 'deny',
  hide: ['Delete*'],
  tools: {
    'Describe*': {},
    'List*': { reason: 'listing is fine' },
    count: { action: 'deny', reason: 'internal counter' },
  },
};

describe('aggregated and per-server endpoints', () => {
  let gateway: TestGateway;
  let all: Client;
  let toyOnly: Client;
  beforeAll(async () => {
    gateway = await startTestGateway({
      policies: { 'ro.json': READONLY, 'allow.json': { version: '1', default: 'allow' } },
      config: { servers: { toy: toyServer('ro.json'), everything: everythingServer('allow.json') } },
    });
    all = await connectClient(`${gateway.url}/mcp`);
    toyOnly = await connectClient(`${gateway.url}/mcp/toy`);
  }, 60_000);
  afterAll(async () => {
    await all?.close();
    await toyOnly?.close();
    await gateway?.stop();
  });

  it('prefixes tool names with <server>__ on /mcp and leaves them unchanged on /mcp/<server>', async () => {
    const names = (await all.listTools()).tools.map((t) => t.name);
    expect(names).toEqual(
      expect.arrayContaining(['toy__DescribeCluster', 'everything__echo', 'everything__get-sum']),
    );
    const own = (await toyOnly.listTools()).tools.map((t) => t.name);
    expect(own).toEqual(expect.arrayContaining(['DescribeCluster', 'ListClusters', 'count']));
    expect(own.some((n) => n.includes('__'))).toBe(false);
    const sum = (await all.callTool({
      name: 'everything__get-sum',
      arguments: { a: 1, b: 2 },
    })) as CallToolResult;
    expect(JSON.stringify(sum.content)).toContain('3');
  });

  it('hides hidden tools from tools/list and answers calls to them exactly like calls to tools that do not exist', async () => {
    const own = (await toyOnly.listTools()).tools.map((t) => t.name);
    expect(own).not.toContain('DeleteCluster');
    const hidden = await toyOnly.callTool({ name: 'DeleteCluster', arguments: {} }).then(
      () => 'resolved',
      (error: Error) => error.message,
    );
    const missing = await toyOnly.callTool({ name: 'NoSuchTool', arguments: {} }).then(
      () => 'resolved',
      (error: Error) => error.message,
    );
    expect(hidden).toBe(missing.replace('NoSuchTool', 'DeleteCluster'));
    expect(hidden).toContain('Unknown tool: DeleteCluster');
  });

  it('never forwards a name the upstream does not list, whatever its casing or prefix tricks', async () => {
    for (const name of [
      'describecluster',
      'DescribeCluster ',
      'toy__DescribeCluster',
      'Describe\u0421luster',
      '__proto__',
    ]) {
      await expect(toyOnly.callTool({ name, arguments: {} })).rejects.toThrow(/Unknown tool/);
    }
    for (const name of ['DescribeCluster', 'toy__toy__DescribeCluster', 'nope__echo', 'everything__']) {
      await expect(all.callTool({ name, arguments: {} })).rejects.toThrow(/Unknown tool/);
    }
  });

  it('keeps denied tools listed and refuses them with the rule and reason', async () => {
    expect((await toyOnly.listTools()).tools.map((t) => t.name)).toContain('count');
    const result = (await toyOnly.callTool({ name: 'count', arguments: {} })) as CallToolResult;
    expect(result.isError).toBe(true);
    const text = (result.content[0] as { text: string }).text;
    expect(text).toContain('internal counter');
    expect(text).toContain('ro.json#/tools/count');
    expect(result._meta?.['countersign/decision']).toMatchObject({ decision: 'deny', reason: 'action_deny' });
    const allowed = (await toyOnly.callTool({ name: 'ListClusters', arguments: {} })) as CallToolResult;
    expect(allowed.isError).toBeFalsy();
  });

  it('routes prompts and resources to their server when aggregated', async () => {
    const prompts = (await all.listPrompts()).prompts.map((p) => p.name);
    expect(prompts).toContain('everything__simple-prompt');
    const prompt = await all.getPrompt({ name: 'everything__simple-prompt' });
    expect(prompt.messages.length).toBeGreaterThan(0);
    const resources = (await all.listResources()).resources;
    const first = resources[0];
    expect(first).toBeDefined();
    const read = await all.readResource({ uri: first?.uri ?? '' });
    expect(read.contents[0]?.uri).toBe(first?.uri);
  });
});
