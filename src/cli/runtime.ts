import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GatewayConfig } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { startEmbeddedRedis } from '../redis/embedded.js';
import type { EmbeddedRedis } from '../redis/embedded.js';

/** The embedded default config: proxies @modelcontextprotocol/server-everything under an example policy. */
export const DEFAULT_CONFIG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../config/default.json');

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
