/**
 * Limiter precision: two `countersign serve` processes share one Redis and one global limit (echo, 10 per
 * hour); 1,000 concurrent echo calls are split across both. Exactly 10 may be admitted, and every refusal
 * must say when to retry (`_meta["countersign/decision"].retryAfterSeconds`).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { benchFetch } from './load.js';
import { gatewayNodeFlags } from './system.js';
import { EVERYTHING_ENTRY, REPO_ROOT, stopper } from './upstream.js';

export const PRECISION_POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    echo: { limits: [{ counter: 'precision', window: 'hour', max: 10, scope: 'global' }] },
  },
} as const;

const LIMIT = 10;
const GATEWAYS = 2;
const SESSIONS_PER_GATEWAY = 8;
const CALLS = 1000;
const DECISION_KEY = 'countersign/decision';

export interface PrecisionResult {
  gateways: number;
  sessionsPerGateway: number;
  calls: number;
  limit: number;
  admitted: number;
  refused: number;
  /** Calls that neither came back with the echo nor as a rate_limited refusal (must be 0). */
  otherErrors: number;
  firstOtherError?: string;
  refusedWithRetryAfter: number;
  everyRefusalHasRetryAfter: boolean;
  /** Admitted calls per gateway, in start order. */
  admittedPerGateway: number[];
  /** First call sent to last answer received. */
  wallMs: number;
  pass: boolean;
}

export interface ServeProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/**
 * `countersign serve` as a child, from source (tsx loader) or, with `from: 'build'`, from `dist/` (what a
 * deployment runs; its memory is not inflated by the TypeScript loader). Resolves with its /mcp URL from the
 * stderr banner.
 */
export async function startServe(
  configFile: string,
  timeoutMs = 30_000,
  extraEnv: NodeJS.ProcessEnv = {},
  from: 'source' | 'build' = 'source',
): Promise<ServeProcess> {
  const loader = pathToFileURL(path.join(REPO_ROOT, 'node_modules/tsx/dist/loader.mjs')).href;
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'warn', ...extraEnv };
  delete env.REDIS_URL; // the config names the shared Redis
  const nodeFlags = gatewayNodeFlags();
  const args =
    from === 'build'
      ? [...nodeFlags, path.join(REPO_ROOT, 'dist/cli/main.js'), 'serve', '--config', configFile]
      : [...nodeFlags, '--import', loader, path.join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile];
  const child: ChildProcess = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
  const stop = stopper(child, 10_000);
  let log = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`countersign serve did not start within ${timeoutMs} ms: ${log.trim()}`)), timeoutMs);
    child.stderr?.on('data', (chunk: Buffer) => {
      if (log.length < 16_384) log += chunk.toString();
      const match = /Countersign gateway: (http:\/\/\S+\/mcp)/.exec(log);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`countersign serve exited (code ${code}): ${log.trim() || '(no output)'}`));
    });
  }).catch(async (error: unknown) => {
    await stop();
    throw error;
  });
  return { url, pid: child.pid ?? 0, stop };
}

type Outcome = { kind: 'admitted' } | { kind: 'refused'; retryAfter: boolean } | { kind: 'error'; message: string };

async function call(client: Client, message: string): Promise<Outcome> {
  try {
    const result = await client.callTool({ name: 'echo', arguments: { message } });
    const content = result.content as { type: string; text?: string }[];
    if (!result.isError) {
      return (content[0]?.text ?? '').includes(message)
        ? { kind: 'admitted' }
        : { kind: 'error', message: `unexpected answer: ${JSON.stringify(content).slice(0, 200)}` };
    }
    const decision = (result._meta as Record<string, unknown> | undefined)?.[DECISION_KEY] as
      | { reason?: string; retryAfterSeconds?: unknown }
      | undefined;
    if (decision?.reason !== 'rate_limited') {
      return { kind: 'error', message: `refused, but not rate_limited: ${JSON.stringify(result).slice(0, 300)}` };
    }
    const retry = decision.retryAfterSeconds;
    return { kind: 'refused', retryAfter: typeof retry === 'number' && Number.isFinite(retry) && retry > 0 };
  } catch (error) {
    return { kind: 'error', message: (error as Error).message };
  }
}

export async function runPrecision(options: { dir: string; redisUrl: string }): Promise<PrecisionResult> {
  const dir = path.join(options.dir, 'precision');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'precision-policy.json'), JSON.stringify(PRECISION_POLICY, null, 2));
  const prefix = `benchprec:${randomBytes(6).toString('hex')}:`;
  const serves: ServeProcess[] = [];
  const sessions: { client: Client; transport: StreamableHTTPClientTransport; gateway: number }[] = [];
  try {
    const configs = await Promise.all(
      Array.from({ length: GATEWAYS }, async (_, i) => {
        const file = path.join(dir, `gateway-${i}.json`);
        const config = {
          listen: { host: '127.0.0.1', port: 0 },
          redis: { url: options.redisUrl, prefix },
          servers: {
            everything: { command: process.execPath, args: [EVERYTHING_ENTRY, 'stdio'], policy: 'precision-policy.json' },
          },
          data_dir: path.join(dir, `data-${i}`),
        };
        await writeFile(file, JSON.stringify(config, null, 2));
        return file;
      }),
    );
    for (const started of await Promise.allSettled(configs.map((file) => startServe(file)))) {
      if (started.status === 'fulfilled') serves.push(started.value);
    }
    if (serves.length !== GATEWAYS) throw new Error(`only ${serves.length} of ${GATEWAYS} gateways started`);

    // Sessions alternate between the gateways, so consecutive calls go to different processes.
    for (let s = 0; s < SESSIONS_PER_GATEWAY; s++) {
      for (const [g, serve] of serves.entries()) {
        const client = new Client({ name: `precision-${g}-${s}`, version: '1.0.0' }, { capabilities: {} });
        const transport = new StreamableHTTPClientTransport(new URL(`${serve.url}/everything`), { fetch: benchFetch });
        await client.connect(transport);
        sessions.push({ client, transport, gateway: g });
      }
    }

    const started = performance.now();
    const outcomes = await Promise.all(
      Array.from({ length: CALLS }, async (_, i) => {
        const session = sessions[i % sessions.length];
        if (!session) throw new Error('no session');
        return { gateway: session.gateway, outcome: await call(session.client, `precision-${i}`) };
      }),
    );
    const wallMs = performance.now() - started;

    const admittedPerGateway = serves.map(() => 0);
    let refused = 0;
    let withRetry = 0;
    let otherErrors = 0;
    let firstOtherError: string | undefined;
    for (const { gateway, outcome } of outcomes) {
      if (outcome.kind === 'admitted') admittedPerGateway[gateway] = (admittedPerGateway[gateway] ?? 0) + 1;
      else if (outcome.kind === 'refused') {
        refused++;
        if (outcome.retryAfter) withRetry++;
      } else {
        otherErrors++;
        firstOtherError ??= outcome.message;
      }
    }
    const admitted = admittedPerGateway.reduce((n, v) => n + v, 0);
    return {
      gateways: GATEWAYS,
      sessionsPerGateway: SESSIONS_PER_GATEWAY,
      calls: CALLS,
      limit: LIMIT,
      admitted,
      refused,
      otherErrors,
      ...(firstOtherError !== undefined ? { firstOtherError } : {}),
      refusedWithRetryAfter: withRetry,
      everyRefusalHasRetryAfter: withRetry === refused,
      admittedPerGateway,
      wallMs,
      pass: admitted === LIMIT && refused === CALLS - LIMIT && withRetry === refused && otherErrors === 0,
    };
  } finally {
    await Promise.all(
      sessions.map(async ({ client, transport }) => {
        await transport.terminateSession().catch(() => undefined);
        await client.close().catch(() => undefined);
      }),
    );
    await Promise.all(serves.map((s) => s.stop().catch(() => undefined)));
  }
}
