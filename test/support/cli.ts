import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, writePolicies } from './gateway.js';

/** Node arguments that run the CLI from source (tsx loader by absolute URL, so any cwd works). */
export function cliCommand(args: string[]): string[] {
  const loader = pathToFileURL(path.join(REPO_ROOT, 'node_modules/tsx/dist/loader.mjs')).href;
  return ['--import', loader, path.join(REPO_ROOT, 'src/cli/main.ts'), ...args];
}

/** Starts the CLI as a long-running child (e.g. `serve`). */
export function spawnCli(
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv },
): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, cliCommand(args), {
    cwd: options.cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'info', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `countersign` command (from source, through tsx) and collects its output. */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  cwd: string = REPO_ROOT,
): Promise<CliResult> {
  const child = spawn(process.execPath, cliCommand(args), {
    cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end();
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  return { code, stdout, stderr };
}

export interface ServeProcess {
  child: ChildProcessWithoutNullStreams;
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  /** Everything the process wrote to stderr so far. */
  log: () => string;
}

/** Writes the policies and `countersign.json` for a `serve` process into `dir`; returns the config file. */
export async function writeServeFiles(
  dir: string,
  config: Record<string, unknown>,
  policies: Record<string, unknown>,
): Promise<string> {
  await writePolicies(dir, policies);
  const file = path.join(dir, 'countersign.json');
  await writeFile(file, JSON.stringify(config));
  return file;
}

/** Starts `countersign serve --config <file>` and resolves once it listens. */
export async function startServe(
  configFile: string,
  options: { cwd: string; env?: NodeJS.ProcessEnv },
): Promise<ServeProcess> {
  const child = spawnCli(['serve', '--config', configFile], options);
  let log = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${log}`)), 30_000);
    child.stderr.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const match = /Countersign gateway: (http:\/\/[^/\s]+)\/mcp/.exec(log);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}:\n${log}`)));
  });
  return { child, url, log: () => log };
}
