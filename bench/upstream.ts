import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/redis/embedded.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const EVERYTHING_ENTRY = path.join(REPO_ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');

export interface RunningUpstream {
  /** Streamable HTTP endpoint, e.g. http://127.0.0.1:1234/mcp */
  url: string;
  pid: number;
  stop(): Promise<void>;
}

function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Stops a child with SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
export function stopper(child: ChildProcess, graceMs: number): () => Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
}

/** Starts `args` (run by this Node) as a child listening on `port`; resolves once it accepts TCP connections. */
async function startHttpChild(what: string, args: string[], port: number, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunningUpstream> {
  const child: ChildProcess = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    if (log.length < 8192) log += chunk.toString();
  });
  const stop = stopper(child, 5000);
  const deadline = Date.now() + timeoutMs;
  while (!(await acceptsConnections(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`${what} did not start on port ${port}: ${log.trim() || '(no output)'}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `http://127.0.0.1:${port}/mcp`, pid: child.pid ?? 0, stop };
}

/** Starts server-everything in Streamable HTTP mode on a free loopback port; resolves once it accepts TCP connections. */
export async function startEverythingHttp(timeoutMs = 20_000): Promise<RunningUpstream> {
  const port = await freePort();
  return startHttpChild('server-everything', [EVERYTHING_ENTRY, 'streamableHttp'], port, { PATH: process.env.PATH ?? '', PORT: String(port) }, timeoutMs);
}

export const MCP_PROXY_ENTRY = path.join(REPO_ROOT, 'node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs');

/**
 * Starts `mcp-proxy` (npm, a plain stdio → Streamable HTTP proxy, default settings) in front of its own
 * server-everything over stdio, serving Streamable HTTP only at http://127.0.0.1:<free port>/mcp.
 */
export async function startMcpProxy(timeoutMs = 20_000): Promise<RunningUpstream> {
  const port = await freePort();
  const args = [
    MCP_PROXY_ENTRY,
    '--host', '127.0.0.1',
    '--port', String(port),
    '--server', 'stream',
    '--endpoint', '/mcp',
    '--',
    process.execPath, EVERYTHING_ENTRY, 'stdio',
  ];
  return startHttpChild('mcp-proxy', args, port, { PATH: process.env.PATH ?? '' }, timeoutMs);
}
