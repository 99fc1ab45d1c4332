import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';
import { parseConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/gateway/gateway.js';
import type { RunningGateway } from '../../src/gateway/gateway.js';
import { silentLogger } from '../../src/log/logger.js';
import { connectTestRedis, dropPrefix, testRedisUrl, uniquePrefix } from './redis.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const EVERYTHING_ENTRY = path.join(
  REPO_ROOT,
  'node_modules/@modelcontextprotocol/server-everything/dist/index.js',
);
export const TOY_SERVER = path.join(REPO_ROOT, 'test/fixtures/toy-server.mjs');

/** An upstream entry that runs server-everything over stdio. */
export function everythingServer(policy: string): Record<string, unknown> {
  return { command: process.execPath, args: [EVERYTHING_ENTRY, 'stdio'], policy };
}

/** An upstream entry that runs the test-defined toy server over stdio. */
export function toyServer(policy: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { command: process.execPath, args: [TOY_SERVER], policy, ...extra };
}

export interface TestGateway extends RunningGateway {
  dir: string;
  prefix: string;
  stop(): Promise<void>;
}

/** Writes policy files into `dir` (file name → document, or its text as is). */
export async function writePolicies(dir: string, policies: Record<string, unknown>): Promise<void> {
  for (const [name, doc] of Object.entries(policies)) {
    await writeFile(path.join(dir, name), typeof doc === 'string' ? doc : JSON.stringify(doc, null, 2));
  }
}

/**
 * Starts a real gateway on a free loopback port, against the test run's redis-server, with its config
 * and policies written to a temp folder (`policies` maps file names to documents).
 */
export async function startTestGateway(options: {
  config: Record<string, unknown>;
  policies?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  now?: () => number;
}): Promise<TestGateway> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-gw-'));
  await writePolicies(dir, options.policies ?? {});
  const prefix = uniquePrefix('gw');
  const text = JSON.stringify({
    listen: { host: '127.0.0.1', port: 0 },
    redis: { prefix },
    data_dir: dir,
    ...options.config,
  });
  // Written too, so that reload() reads the config file as `serve` does on SIGHUP.
  const file = path.join(dir, 'countersign.json');
  await writeFile(file, text);
  const config = parseConfig(text, file, options.env ?? {});
  const gateway = await startGateway({
    config,
    redisUrl: testRedisUrl(),
    logger: silentLogger(),
    env: options.env ?? {},
    ...(options.now ? { now: options.now } : {}),
  });
  return {
    ...gateway,
    dir,
    prefix,
    /** Closes the gateway and removes its keys and files. */
    stop: async () => {
      await gateway.close();
      const redis = await connectTestRedis();
      await dropPrefix(redis, prefix);
      redis.disconnect();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A real SDK client connected over Streamable HTTP. */
export async function connectClient(
  url: string,
  options: { token?: string; capabilities?: ClientCapabilities; name?: string } = {},
): Promise<Client> {
  const client = new Client(
    { name: options.name ?? 'test-agent', version: '1.0.0' },
    { capabilities: options.capabilities ?? {} },
  );
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: options.token ? { headers: { Authorization: `Bearer ${options.token}` } } : {},
  });
  await client.connect(transport);
  return client;
}
