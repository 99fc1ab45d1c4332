import { spawn } from 'node:child_process';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';

/** A redis-server process that Countersign started (or found still running from an earlier start). */
export interface EmbeddedRedis {
  url: string;
  /** True when a server left running by an earlier `serve` was reused. */
  reused: boolean;
  stop(): Promise<void>;
}

export const REDIS_INSTALL_HINT =
  'redis-server was not found on PATH: install it with `apt-get install -y redis-server` (Debian/Ubuntu), or set REDIS_URL to a Redis you run';

export class RedisNotInstalledError extends Error {
  readonly code = 'countersign.redis.not_installed';
  constructor() {
    super(REDIS_INSTALL_HINT);
  }
}

export async function findOnPath(binary: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, binary);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A TCP port on loopback that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function answersPing(url: string, timeoutMs: number): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a private redis-server on loopback with its data under `dir` and the append-only file on,
 * so parked calls and audit events survive a restart of the gateway and of Redis itself.
 * When `reuse` is set and a server started earlier for the same `dir` still answers, it is reused
 * (a gateway killed with -9 leaves its Redis running; starting a second one on the same files would corrupt them).
 */
export async function startEmbeddedRedis(options: {
  dir: string;
  reuse: boolean;
  port?: number;
}): Promise<EmbeddedRedis> {
  const binary = await findOnPath('redis-server');
  if (!binary) throw new RedisNotInstalledError();
  const dir = path.resolve(options.dir);
  await mkdir(dir, { recursive: true });
  const stateFile = path.join(dir, 'embedded.json');

  if (options.reuse) {
    const previous = await readFile(stateFile, 'utf8').then(
      (text) => JSON.parse(text) as { pid?: number; port?: number },
      () => undefined,
    );
    if (previous?.pid && previous.port && processAlive(previous.pid)) {
      const url = `redis://127.0.0.1:${previous.port}`;
      if (await answersPing(url, 1000)) {
        const pid = previous.pid;
        return { url, reused: true, stop: async () => stopPid(pid) };
      }
    }
  }

  const port = options.port ?? (await freePort());
  const child = spawn(
    binary,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--protected-mode',
      'yes',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--daemonize',
      'no',
      '--logfile',
      path.join(dir, 'redis.log'),
    ],
    { stdio: 'ignore', detached: true },
  );
  child.unref();
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (!(await answersPing(url, 500))) {
    if (exited || Date.now() > deadline) {
      throw new Error(`redis-server did not start on port ${port}; see ${path.join(dir, 'redis.log')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const pid = child.pid ?? 0;
  await writeFile(stateFile, JSON.stringify({ pid, port }));
  return { url, reused: false, stop: async () => stopPid(pid) };
}

async function stopPid(pid: number): Promise<void> {
  if (!processAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
}
