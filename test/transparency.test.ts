import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult, ClientCapabilities, Progress } from '@modelcontextprotocol/sdk/types.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { EVERYTHING_ENTRY, everythingServer, startTestGateway } from './support/gateway.js';
import type { TestGateway } from './support/gateway.js';
import { startEverythingHttp } from './support/everything-http.js';

const CAPABILITIES: ClientCapabilities = {
  sampling: {},
  elicitation: { form: {} },
  roots: { listChanged: true },
};
const ALLOW_ALL = { version: '1', default: 'allow' };

/** Answers the server's requests the way a real client app would, and records them. */
function instrument(client: Client): {
  sampled: string[];
  elicited: string[];
  logs: string[];
  updated: string[];
} {
  const seen = {
    sampled: [] as string[],
    elicited: [] as string[],
    logs: [] as string[],
    updated: [] as string[],
  };
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    const first = request.params.messages[0]?.content;
    seen.sampled.push(first && 'text' in first ? String(first.text) : '');
    return { model: 'test-model', role: 'assistant', content: { type: 'text', text: 'sampled answer' } };
  });
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    seen.elicited.push(request.params.message);
    return { action: 'decline' };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => ({
    roots: [{ uri: 'file:///work/project', name: 'project' }],
  }));
  client.setNotificationHandler(LoggingMessageNotificationSchema, async (n) => {
    seen.logs.push(String(n.params.data));
  });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, async (n) => {
    seen.updated.push(n.params.uri);
  });
  return seen;
}

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const textOf = (result: CallToolResult): string =>
  result.content.map((c) => ('text' in c ? c.text : '')).join('\n');

describe.each(['stdio', 'streamable-http'] as const)(
  'the gateway is transparent for what the policy does not touch (server-everything over %s)',
  (mode) => {
    let gateway: TestGateway;
    let remote: Awaited<ReturnType<typeof startEverythingHttp>> | undefined;
    let direct: Client;
    let proxied: Client;
    let directSeen: ReturnType<typeof instrument>;
    let proxiedSeen: ReturnType<typeof instrument>;

    beforeAll(async () => {
      // Over stdio the gateway runs its own server-everything; over Streamable HTTP both sides reach one
      // server-everything (the gateway through its own HTTP client transport).
      remote = mode === 'streamable-http' ? await startEverythingHttp('streamableHttp') : undefined;
      const upstream = remote
        ? { url: `http://127.0.0.1:${remote.port}/mcp`, transport: 'streamable-http', policy: 'allow.json' }
        : everythingServer('allow.json');
      gateway = await startTestGateway({
        policies: { 'allow.json': ALLOW_ALL },
        config: { servers: { everything: upstream } },
      });
      direct = new Client({ name: 'direct', version: '1' }, { capabilities: CAPABILITIES });
      directSeen = instrument(direct);
      await direct.connect(
        remote
          ? new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${remote.port}/mcp`))
          : new StdioClientTransport({
              command: process.execPath,
              args: [EVERYTHING_ENTRY, 'stdio'],
              stderr: 'ignore',
            }),
      );
      proxied = new Client({ name: 'proxied', version: '1' }, { capabilities: CAPABILITIES });
      proxiedSeen = instrument(proxied);
      await proxied.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/mcp`)));
    }, 60_000);

    afterAll(async () => {
      await direct?.close();
      await proxied?.close();
      await gateway?.stop();
      await remote?.stop();
    });

    it('declares the same server info and capabilities', () => {
      expect(proxied.getServerVersion()).toEqual(direct.getServerVersion());
      const d = direct.getServerCapabilities() ?? {};
      const p = proxied.getServerCapabilities() ?? {};
      for (const key of ['tools', 'resources', 'prompts', 'logging', 'completions'] as const) {
        expect(Boolean(p[key]), key).toBe(Boolean(d[key]));
      }
      expect(Boolean(p.resources?.subscribe)).toBe(Boolean(d.resources?.subscribe));
      expect(proxied.getInstructions()).toEqual(direct.getInstructions());
    });

    it('lists the same tools with the same schemas', async () => {
      const [d, p] = await Promise.all([direct.listTools(), proxied.listTools()]);
      const byName = (list: typeof d.tools) => [...list].sort((a, b) => a.name.localeCompare(b.name));
      expect(byName(p.tools).map((t) => t.name)).toEqual(byName(d.tools).map((t) => t.name));
      expect(byName(p.tools)).toEqual(byName(d.tools));
    });

    it('calls a tool and returns the same result', async () => {
      const args = { name: 'get-sum', arguments: { a: 2, b: 40 } };
      const [d, p] = await Promise.all([direct.callTool(args), proxied.callTool(args)]);
      expect(p).toEqual(d);
    });

    it('lists and reads the same resources and templates', async () => {
      const [d, p] = await Promise.all([direct.listResources(), proxied.listResources()]);
      expect(p).toEqual(d);
      const [dt, pt] = await Promise.all([direct.listResourceTemplates(), proxied.listResourceTemplates()]);
      expect(pt).toEqual(dt);
      const uri = d.resources[0]?.uri ?? '';
      expect(uri).not.toBe('');
      const [dr, pr] = await Promise.all([direct.readResource({ uri }), proxied.readResource({ uri })]);
      expect(pr).toEqual(dr);
      // Dynamic resources embed the time they were made ("created at 11:17:03 PM"): compare all but the clock.
      const templated = 'demo://resource/dynamic/text/7';
      const withoutClock = (result: unknown): string =>
        JSON.stringify(result).replace(/\d{1,2}:\d{2}:\d{2}\s?[AP]M/g, '<time>');
      const [dynamicDirect, dynamicProxied] = await Promise.all([
        direct.readResource({ uri: templated }),
        proxied.readResource({ uri: templated }),
      ]);
      expect(withoutClock(dynamicProxied)).toBe(withoutClock(dynamicDirect));
      expect(withoutClock(dynamicProxied)).toContain(
        'Resource 7: This is a plaintext resource created at <time>',
      );
    });

    it('lists and gets the same prompts', async () => {
      const [d, p] = await Promise.all([direct.listPrompts(), proxied.listPrompts()]);
      expect(p).toEqual(d);
      const request = { name: 'args-prompt', arguments: { city: 'Lyon', state: 'Rhône' } };
      expect(await proxied.getPrompt(request)).toEqual(await direct.getPrompt(request));
    });

    it('returns the same completions', async () => {
      const request = {
        ref: { type: 'ref/prompt' as const, name: 'completable-prompt' },
        argument: { name: 'department', value: 'E' },
      };
      const [d, p] = await Promise.all([direct.complete(request), proxied.complete(request)]);
      expect(p).toEqual(d);
      expect(p.completion.values.length).toBeGreaterThan(0);
    });

    it("relays progress notifications under the client's own token", async () => {
      const progress: Progress[] = [];
      const result = await proxied.callTool(
        { name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
        undefined,
        { onprogress: (p) => progress.push(p) },
      );
      expect(textOf(result as CallToolResult)).toContain('Long running operation completed');
      expect(progress.map((p) => p.progress)).toEqual([1, 2, 3]);
      expect(progress.every((p) => p.total === 3)).toBe(true);
    });

    it('relays sampling requests to the client that made the call', async () => {
      const result = (await proxied.callTool({
        name: 'trigger-sampling-request',
        arguments: { prompt: 'hello from test' },
      })) as CallToolResult;
      expect(proxiedSeen.sampled.some((s) => s.includes('hello from test'))).toBe(true);
      expect(textOf(result)).toContain('sampled answer');
    });

    it('relays elicitation requests to the client that made the call', async () => {
      const result = (await proxied.callTool({
        name: 'trigger-elicitation-request',
        arguments: {},
      })) as CallToolResult;
      expect(proxiedSeen.elicited.length).toBe(1);
      expect(textOf(result).toLowerCase()).toContain('decline');
    });

    it('relays roots requests to the client', async () => {
      const result = (await proxied.callTool({ name: 'get-roots-list', arguments: {} })) as CallToolResult;
      expect(textOf(result)).toContain('file:///work/project');
    });

    it('relays logging after setLevel', async () => {
      await proxied.setLoggingLevel('debug');
      await proxied.callTool({ name: 'toggle-simulated-logging', arguments: {} });
      // Server-everything's simulated log lines read "<Level>-level message", except its alert line:
      // "Alert level-message". It sends one at once and one every 5 s, at a random level.
      await until(() => proxiedSeen.logs.some((line) => /level[- ]message/.test(line)), 8000);
      await proxied.callTool({ name: 'toggle-simulated-logging', arguments: {} });
    }, 15_000);

    it('relays resource subscriptions and their update notifications', async () => {
      const uri = 'demo://resource/static/document/architecture.md';
      await proxied.subscribeResource({ uri });
      await proxied.callTool({ name: 'toggle-subscriber-updates', arguments: {} });
      await until(() => proxiedSeen.updated.includes(uri), 8000);
      await proxied.unsubscribeResource({ uri });
      await proxied.callTool({ name: 'toggle-subscriber-updates', arguments: {} });
      expect(directSeen.updated).toEqual([]);
    }, 15_000);

    it('answers ping', async () => {
      await expect(proxied.ping()).resolves.toBeDefined();
    });
  },
);
