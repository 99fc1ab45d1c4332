import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { freePort } from '../../src/redis/embedded.js';
import { EVERYTHING_ENTRY } from './gateway.js';

/** Runs server-everything over HTTP (`streamableHttp` or `sse`); resolves once it listens. */
export async function startEverythingHttp(
  mode: 'streamableHttp' | 'sse',
  /** A fixed port (to start it again where it was); a free one by default. */
  fixedPort?: number,
): Promise<{ port: number; stop(): Promise<void> }> {
  const port = fixedPort ?? (await freePort());
  const child: ChildProcess = spawn(process.execPath, [EVERYTHING_ENTRY, mode], {
    env: { PATH: process.env.PATH, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let log = '';
    const timer = setTimeout(
      () => reject(new Error(`server-everything ${mode} did not start: ${log}`)),
      20_000,
    );
    child.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (/listening on port|running on port/i.test(log)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`server-everything exited with ${code}: ${log}`)));
  });
  return {
    port,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}
