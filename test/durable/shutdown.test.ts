/**
 * Shutdown and start-up of a real `countersign serve` child around a Redis that goes away: SIGTERM ends the
 * process within the grace period plus a few seconds even when Redis died first (a call in flight finishes
 * and its audit event is spooled to data_dir; a call held for a person is answered), and a start that fails
 * stops the private redis-server it had started.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startEmbeddedRedis } from '../../src/redis/embedded.js';
import type { EmbeddedRedis } from '../../src/redis/embedded.js';
import { runCli, startServe, writeServeFiles } from '../support/cli.js';
import type { ServeProcess } from '../support/cli.js';
import { startFakeSlack } from '../support/fake-slack.js';
import type { FakeSlack } from '../support/fake-slack.js';
import { connectClient, toyServer } from '../support/gateway.js';
import { AGENT_TOKEN, ALICE, CHANNEL, postedApprovalId, sha, slackEnv, until } from '../support/approvals.js';

const GRACE_MS = 3000;
const POLICY = {
  version: '1',
  default: 'deny',
  tools: {
    sleep: { action: 'allow' },
    CloneContainerToECR: {
      action: 'require_approval',
      approval: { channel: CHANNEL, reviewers: [ALICE.id], wait: 'hold', timeout: '5m' },
    },
  },
};

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `countersign-shutdown-${label}-`));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The pid of the redis-server an embedded start wrote into `<dir>/embedded.json`. */
async function embeddedPid(redisDir: string): Promise<number> {
  const state = JSON.parse(await readFile(path.join(redisDir, 'embedded.json'), 'utf8')) as { pid: number };
  return state.pid;
}

/** A serve process against a Redis this test owns (and kills). */
async function serveWithOwnRedis(
  label: string,
  slack?: FakeSlack,
): Promise<{ dir: string; gateway: ServeProcess; redis: EmbeddedRedis; redisDir: string; redisPid: number }> {
  const dir = await tempDir(label);
  const redisDir = path.join(dir, 'redis');
  const redis = await startEmbeddedRedis({ dir: redisDir, reuse: false });
  cleanups.push(() => redis.stop());
  const redisPid = await embeddedPid(redisDir);
  const configFile = await writeServeFiles(
    dir,
    {
      listen: { port: 0 },
      redis: { url: redis.url, prefix: 'cs:' },
      servers: { aws: toyServer('p.json') },
      grants: [{ id: 'deploy-bot', owner: 'olga@example.com', token_sha256: sha(AGENT_TOKEN) }],
      approvals: { poll_ms: 200, liveness_ms: 2000 },
      shutdown_grace_ms: GRACE_MS,
      data_dir: path.join(dir, 'state'),
    },
    { 'p.json': POLICY },
  );
  const gateway = await startServe(configFile, {
    cwd: dir,
    env: { LOG_LEVEL: 'warn', ...(slack ? slackEnv(slack.apiUrl) : {}) },
  });
  cleanups.push(async () => {
    if (gateway.child.exitCode === null && gateway.child.signalCode === null) gateway.child.kill('SIGKILL');
  });
  return { dir, gateway, redis, redisDir, redisPid };
}

async function killRedis(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await until(async () => (alive(pid) ? undefined : true), 5000, 'redis-server gone');
}

/** Sends SIGTERM and resolves with the exit code and how long the process took to exit. */
async function terminate(gateway: ServeProcess): Promise<{ code: number | null; ms: number }> {
  const started = Date.now();
  const exited = new Promise<number | null>((resolve) => gateway.child.once('exit', (code) => resolve(code)));
  gateway.child.kill('SIGTERM');
  const code = await Promise.race([
    exited,
    new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), GRACE_MS + 15_000)),
  ]);
  if (code === 'hung') throw new Error(`serve did not exit after SIGTERM:\n${gateway.log()}`);
  return { code, ms: Date.now() - started };
}

async function spooled(dir: string): Promise<Record<string, unknown>[]> {
  const state = path.join(dir, 'state');
  const files = (await readdir(state)).filter((f) => f.startsWith('audit-spool-'));
  const lines: Record<string, unknown>[] = [];
  for (const file of files) {
    const text = await readFile(path.join(state, file), 'utf8');
    for (const line of text.split('\n'))
      if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
  }
  return lines;
}

describe('SIGTERM after Redis became unreachable', () => {
  it('exits within the grace period plus 5 s; the call in flight finishes and its audit event is spooled', async () => {
    const { dir, gateway, redisPid } = await serveWithOwnRedis('inflight');
    const agent = await connectClient(`${gateway.url}/mcp`, { token: AGENT_TOKEN });
    cleanups.push(() => agent.close());
    const call = agent.callTool({ name: 'sleep', arguments: { ms: 1500 } }) as Promise<CallToolResult>;
    // The call has started (its allow decision is in Redis) before Redis dies.
    await new Promise((r) => setTimeout(r, 400));
    await killRedis(redisPid);
    const { code, ms } = await terminate(gateway);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(GRACE_MS + 5000);
    const result = await call;
    expect(result.isError).toBeFalsy();
    expect(JSON.stringify(result.content)).toContain('slept 1500');
    // The result event, written after Redis died and during shutdown, waits in the spool under data_dir.
    const events = await spooled(dir);
    expect(events.some((e) => e.tool === 'sleep')).toBe(true);
  }, 60_000);

  it('exits within the grace period plus 5 s while a call is held for approval', async () => {
    const slack = await startFakeSlack();
    cleanups.push(() => slack.close());
    const { gateway, redisPid } = await serveWithOwnRedis('held', slack);
    const agent = await connectClient(`${gateway.url}/mcp`, { token: AGENT_TOKEN });
    cleanups.push(() => agent.close());
    const held = agent
      .callTool({ name: 'CloneContainerToECR', arguments: { repo: 'held-at-shutdown' } }, undefined, {
        timeout: 120_000,
      })
      .then(
        (r) => r as CallToolResult,
        (error: Error) => error,
      );
    await postedApprovalId(slack, 'held-at-shutdown');
    await killRedis(redisPid);
    const { code, ms } = await terminate(gateway);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(GRACE_MS + 5000);
    // The held request got an answer (it does not hang with the process gone).
    await expect(
      Promise.race([held, new Promise((r) => setTimeout(() => r('no answer'), 5000))]),
    ).resolves.not.toBe('no answer');
  }, 60_000);

  it('exits within the grace period plus 5 s right after Redis restarted', async () => {
    const { gateway, redis, redisDir, redisPid } = await serveWithOwnRedis('restarted');
    await killRedis(redisPid);
    await new Promise((r) => setTimeout(r, 500));
    // The same Redis comes back; SIGTERM follows at once, before every connection has reconnected.
    const port = Number(new URL(redis.url).port);
    const again = await startEmbeddedRedis({ dir: redisDir, reuse: false, port });
    cleanups.push(() => again.stop());
    const { code, ms } = await terminate(gateway);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(GRACE_MS + 5000);
  }, 60_000);
});

/** Every live redis-server whose command line names this port. */
async function redisServersOnPort(port: number): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const args = cmdline.split('\0');
    if (!args[0]?.includes('redis-server')) continue;
    const at = args.indexOf('--port');
    if (at >= 0 && args[at + 1] === String(port)) found.push(Number(entry));
  }
  return found;
}

/** Runs a `serve` that must fail to start; returns its result and the private Redis it had started, if any. */
async function failedStart(
  label: string,
  config: Record<string, unknown>,
  policies: Record<string, unknown>,
): Promise<{ code: number; stderr: string; redisPid: number | undefined; redisPort: number | undefined }> {
  const dir = await tempDir(label);
  const dataDir = path.join(dir, 'state');
  const configFile = await writeServeFiles(dir, { ...config, data_dir: dataDir }, policies);
  const result = await runCli(['serve', '--config', configFile], { LOG_LEVEL: 'warn' }, dir);
  const state = await readFile(path.join(dataDir, 'redis', 'embedded.json'), 'utf8').then(
    (text) => JSON.parse(text) as { pid: number; port: number },
    () => undefined,
  );
  if (state && alive(state.pid)) cleanups.push(async () => process.kill(state.pid, 'SIGKILL'));
  return { code: result.code, stderr: result.stderr, redisPid: state?.pid, redisPort: state?.port };
}

describe('a serve start that fails', () => {
  it('stops the private redis-server it started when a policy is invalid', async () => {
    const { code, redisPid, redisPort } = await failedStart(
      'bad-policy',
      { listen: { port: 0 }, servers: { aws: toyServer('p.json') } },
      { 'p.json': '{ "version": "1", "default": "maybe", ' },
    );
    expect(code).not.toBe(0);
    // It did start one (so the check below means something) ...
    expect(redisPid).toBeGreaterThan(0);
    // ... and no redis-server of its data_dir is left running.
    expect(alive(redisPid ?? 0)).toBe(false);
    expect(await redisServersOnPort(redisPort ?? 0)).toEqual([]);
  }, 60_000);

  it('stops the private redis-server it started when the port is in use', async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise((resolve) => taken.close(resolve)));
    const address = taken.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const { code, redisPid, redisPort } = await failedStart(
      'port-in-use',
      { listen: { host: '127.0.0.1', port }, servers: { aws: toyServer('p.json') } },
      { 'p.json': POLICY },
    );
    expect(code).not.toBe(0);
    expect(redisPid).toBeGreaterThan(0);
    expect(alive(redisPid ?? 0)).toBe(false);
    expect(await redisServersOnPort(redisPort ?? 0)).toEqual([]);
  }, 60_000);
});
