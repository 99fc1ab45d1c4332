import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GatewayConfig } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { startEmbeddedRedis } from '../redis/embedded.js';
import type { EmbeddedRedis } from '../redis/embedded.js';

/** The embedded default config: proxies @modelcontextprotocol/server-everything under an example policy. */
export const DEFAULT_CONFIG = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../config/default.json',
);

export interface RedisTarget {
  url: string;
  embedded?: EmbeddedRedis;
}

/**
 * REDIS_URL, else the config's redis.url, else a private redis-server under `data_dir` (reused if one
 * started earlier is still running). Throws RedisNotInstalledError with a one-line install hint.
 */
export async function resolveRedis(config: GatewayConfig, logger: Logger): Promise<RedisTarget> {
  if (config.redisUrl) return { url: config.redisUrl };
  const dir = path.resolve(config.raw.data_dir, 'redis');
  const embedded = await startEmbeddedRedis({ dir, reuse: true });
  logger.info(
    { url: embedded.url, dir, reused: embedded.reused },
    embedded.reused
      ? 'REDIS_URL is not set: using the private redis-server started earlier'
      : 'REDIS_URL is not set: started a private redis-server (loopback, append-only file on)',
  );
  return { url: embedded.url, embedded };
}

/**
 * The approvals API's token. COUNTERSIGN_ADMIN_TOKEN when set. Otherwise, for a loopback-only gateway
 * without grants (the embedded default), a random token kept in `<data_dir>/admin-token` (mode 0600, reused
 * across restarts), so approvals work without Slack and `countersign approvals` finds it. A gateway with
 * grants gets no implicit token: its approvals API stays off until one is set.
 */
export async function ensureAdminToken(config: GatewayConfig, logger: Logger): Promise<void> {
  if (config.adminToken) return;
  if (!config.anonymous) {
    logger.info(
      'COUNTERSIGN_ADMIN_TOKEN is not set: the approvals API (/api/approvals) is off; Slack decides',
    );
    return;
  }
  const file = path.resolve(config.raw.data_dir, 'admin-token');
  let token = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (token.length < 16) {
    token = randomBytes(24).toString('base64url');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, `${token}\n`, { mode: 0o600 });
  }
  await chmod(file, 0o600);
  config.adminToken = token;
  logger.info(
    { file },
    'approvals API on (loopback only): its admin token is in this file; `countersign approvals` reads it',
  );
}
