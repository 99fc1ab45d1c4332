import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connectClient, toyServer } from './support/gateway.js';
import { runCli, startServe } from './support/cli.js';

const TOKEN = 'secret-agent-token-5f1c9e';
const serveIn = (cwd: string, configFile: string) =>
  startServe(configFile, { cwd, env: { AGENT_TOKEN: TOKEN, LOG_LEVEL: 'debug' } });

const exited = (child: ChildProcessWithoutNullStreams): Promise<number | null> =>
  child.exitCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((resolve) => child.once('exit', (code) => resolve(code)));

describe('countersign serve with no REDIS_URL', () => {
  let dir: string;
  let configFile: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-serve-'));
    await writeFile(path.join(dir, 'p.json'), JSON.stringify({ version: '1', default: 'allow' }));
    configFile = path.join(dir, 'countersign.json');
    await writeFile(
      configFile,
      JSON.stringify({
        listen: { port: 0 },
        servers: { toy: toyServer('p.json') },
        grants: [{ id: 'agent', owner: 'ops', token_env: 'AGENT_TOKEN' }],
        shutdown_grace_ms: 10_000,
        data_dir: 'state',
      }),
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts a private Redis, drains a call in flight on SIGTERM, and keeps the audit trail across restarts', async () => {
    const first = await serveIn(dir, configFile);
    expect(first.log()).toContain('started a private redis-server');
    const redisState = JSON.parse(await readFile(path.join(dir, 'state/redis/embedded.json'), 'utf8')) as {
      pid: number;
    };
    expect(redisState.pid).toBeGreaterThan(0);

    const client = await connectClient(`${first.url}/mcp`, { token: TOKEN });
    const slow = client.callTool({ name: 'sleep', arguments: { ms: 1500 } }) as Promise<CallToolResult>;
    await new Promise((r) => setTimeout(r, 300));
    first.child.kill('SIGTERM');
    const result = await slow;
    expect((result.content[0] as { text: string }).text).toBe('slept 1500');
    expect(await exited(first.child)).toBe(0);
    expect(first.log()).toContain('draining calls in flight');
    // The private Redis it started went down with it.
    expect(() => process.kill(redisState.pid, 0)).toThrow();

    // A new process starts Redis again from its append-only file: the earlier events are still there.
    const second = await serveIn(dir, configFile);
    const query = await runCli(
      ['audit', 'query', '--config', configFile, '--json'],
      { LOG_LEVEL: 'warn', AGENT_TOKEN: TOKEN },
      dir,
    );
    const verify = await runCli(
      ['audit', 'verify', '--config', configFile],
      { LOG_LEVEL: 'warn', AGENT_TOKEN: TOKEN },
      dir,
    );
    second.child.kill('SIGTERM');
    expect(await exited(second.child)).toBe(0);
    expect(query.code).toBe(0);
    const events = query.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { tool: string; type: string; outcome?: string });
    expect(events.filter((e) => e.tool === 'sleep').map((e) => [e.type, e.outcome])).toEqual([
      ['decision', undefined],
      ['result', 'ok'],
    ]);
    expect(verify.code).toBe(0);
    // Debug logs of both runs never contain the bearer token.
    expect(first.log()).toContain('session opened');
    expect(first.log()).not.toContain(TOKEN);
    expect(second.log()).not.toContain(TOKEN);
  }, 60_000);
});
