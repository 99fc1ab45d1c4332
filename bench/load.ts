import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';

/** `shared`: every caller uses one client session; `per-caller`: each concurrent caller has its own. */
export type ClientMode = 'shared' | 'per-caller';

export interface LoadSpec {
  url: string;
  concurrency: number;
  clientMode: ClientMode;
  /** Calls made (at the same concurrency) before measuring; not recorded. */
  warmup: number;
  /** Calls measured. */
  calls: number;
  /** Measuring stops early (with fewer calls) after this long. */
  maxMs: number;
}

export interface LoadResult {
  /** Per-call latency in ms, in completion order. */
  latencies: Float64Array;
  /** Wall time of the measured phase, first call sent to last answer received. */
  elapsedMs: number;
  /** Measured calls that failed or were answered with isError (not in `latencies`). */
  errors: number;
  firstError?: string;
}

interface Connected {
  client: Client;
  transport: StreamableHTTPClientTransport;
}

/**
 * fetch, with no listener limit on the transport's AbortSignal: the SDK passes one signal to every request and
 * undici only drops its listener when the Request is collected, so a busy session would otherwise raise a
 * MaxListenersExceededWarning per call (see warnings.ts). Used on both sides alike.
 */
export const benchFetch: FetchLike = (url, init) => {
  if (init?.signal) setMaxListeners(0, init.signal);
  return fetch(url, init);
};

async function connectClient(url: string, name: string): Promise<Connected> {
  const client = new Client({ name, version: '1.0.0' }, { capabilities: {} });
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: benchFetch });
  await client.connect(transport);
  return { client, transport };
}

async function disconnect({ client, transport }: Connected): Promise<void> {
  await transport.terminateSession().catch(() => undefined);
  await client.close().catch(() => undefined);
}

/** One allowed echo call; throws unless the server answered with the echoed text. */
async function echo(client: Client, message: string): Promise<void> {
  const result = await client.callTool({ name: 'echo', arguments: { message } });
  if (result.isError) throw new Error(`tool error: ${JSON.stringify(result.content)}`);
  const content = result.content as { type: string; text?: string }[];
  const text = content[0]?.text ?? '';
  if (!text.includes(message)) throw new Error(`unexpected echo answer: ${text.slice(0, 200)}`);
}

/**
 * Runs `total` calls from `concurrency` callers (each caller sends its next call as soon as its last is
 * answered). Returns latencies when `record` is set.
 */
async function drive(
  clients: readonly Client[],
  concurrency: number,
  total: number,
  deadline: number,
  record: Float64Array | undefined,
): Promise<{ done: number; errors: number; firstError?: string }> {
  let issued = 0;
  let done = 0;
  let errors = 0;
  let firstError: string | undefined;
  const caller = async (index: number): Promise<void> => {
    const client = clients[index % clients.length];
    if (!client) throw new Error('no client');
    while (issued < total && performance.now() < deadline) {
      const seq = issued++;
      const started = performance.now();
      try {
        await echo(client, `bench-${index}-${seq}`);
        const latency = performance.now() - started;
        if (record) record[done] = latency;
        done++;
      } catch (error) {
        errors++;
        firstError ??= (error as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => caller(i)));
  return { done, errors, ...(firstError !== undefined ? { firstError } : {}) };
}

/** Connects, warms up, measures, disconnects. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const sessions = spec.clientMode === 'shared' ? 1 : spec.concurrency;
  const connected = await Promise.all(Array.from({ length: sessions }, (_, i) => connectClient(spec.url, `bench-${i}`)));
  try {
    const clients = connected.map((c) => c.client);
    const warm = await drive(clients, spec.concurrency, spec.warmup, performance.now() + spec.maxMs, undefined);
    if (warm.errors > 0) throw new Error(`warm-up against ${spec.url} failed: ${warm.firstError ?? 'unknown error'}`);
    const record = new Float64Array(spec.calls);
    const started = performance.now();
    const measured = await drive(clients, spec.concurrency, spec.calls, started + spec.maxMs, record);
    const elapsedMs = performance.now() - started;
    return {
      latencies: record.slice(0, measured.done),
      elapsedMs,
      errors: measured.errors,
      ...(measured.firstError !== undefined ? { firstError: measured.firstError } : {}),
    };
  } finally {
    await Promise.all(connected.map(disconnect));
  }
}
