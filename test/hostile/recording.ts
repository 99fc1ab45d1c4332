/**
 * The recording upstream (test/fixtures/recording-server.mjs): every JSON-RPC message it receives is appended
 * to a file, so a test can prove what did, and what never did, reach an upstream server.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../support/gateway.js';

export const RECORDING_SERVER = path.join(REPO_ROOT, 'test/fixtures/recording-server.mjs');

/** An upstream entry that runs the recording server over stdio, recording into `recordFile`. */
export function recordingServer(
  policy: string,
  recordFile: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    command: process.execPath,
    args: [RECORDING_SERVER],
    policy,
    env: { RECORD_FILE: recordFile },
    ...extra,
  };
}

export interface RecordedMessage {
  /** The upstream process that received it (one per downstream session and server). */
  pid: number;
  message: Record<string, unknown>;
  /** The line as recorded, for "does this marker appear anywhere" checks. */
  line: string;
}

/** Everything the upstream processes recording into `file` have received so far. */
export async function recorded(file: string): Promise<RecordedMessage[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const parsed = JSON.parse(line) as { pid: number; message: Record<string, unknown> };
      return { ...parsed, line };
    });
}

/** Whether any message recorded in any of `files` contains `marker` anywhere in its text. */
export async function reachedUpstream(files: readonly string[], marker: string): Promise<boolean> {
  for (const file of files) if ((await recorded(file)).some((r) => r.line.includes(marker))) return true;
  return false;
}

/** Waits (bounded) until a recorded message matches; returns it, or throws with what was recorded. */
export async function waitForRecorded(
  file: string,
  matches: (message: Record<string, unknown>) => boolean,
  timeoutMs = 10_000,
): Promise<RecordedMessage> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = await recorded(file);
    const found = all.find((r) => matches(r.message));
    if (found) return found;
    if (Date.now() > deadline)
      throw new Error(
        `nothing matching was recorded within ${timeoutMs} ms; recorded: ${all.map((r) => r.line.slice(0, 200)).join('\n')}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
