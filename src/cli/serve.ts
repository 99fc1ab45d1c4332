import { loadConfig } from '../config/load.js';
import { startGateway } from '../gateway/gateway.js';
import type { Logger } from '../log/logger.js';
import { ensureAdminToken, resolveRedis } from './runtime.js';

/** `countersign serve`: the HTTP gateway, until SIGTERM/SIGINT, then a graceful drain. */
export async function serve(configFile: string, logger: Logger): Promise<void> {
  const config = await loadConfig(configFile);
  const redis = await resolveRedis(config, logger);
  await ensureAdminToken(config, logger);
  const gateway = await startGateway({ config, redisUrl: redis.url, logger });
  const servers = config.servers.map((s) => s.name);
  logger.info(
    {
      config: configFile,
      endpoints: [`${gateway.url}/mcp`, ...servers.map((s) => `${gateway.url}/mcp/${s}`)],
      grants: config.anonymous
        ? ['local (no grants configured: loopback only, no token needed)']
        : config.grants.map((g) => g.id),
    },
    `Countersign listening on ${gateway.url}`,
  );
  process.stderr.write(`Countersign gateway: ${gateway.url}/mcp  (health: ${gateway.url}/healthz)\n`);

  // SIGHUP: the config file and the policies are read again; grants and policies change together (reload.ts).
  process.on('SIGHUP', () => {
    gateway.reload().then(
      (summary) =>
        logger.info(
          {
            grants: summary.grants,
            grant_changes: Object.fromEntries(
              Object.entries(summary.changes).filter(([, ids]) => ids.length > 0),
            ),
            ...(summary.restartNeeded.length ? { restart_needed: summary.restartNeeded } : {}),
          },
          'SIGHUP: policies reloaded, and the grants with them',
        ),
      (error: Error) =>
        logger.error(
          { err: error.message },
          'SIGHUP: policies NOT reloaded, grants unchanged too (the previous ones stay in force)',
        ),
    );
  });

  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info(
        { signal, grace_ms: config.raw.shutdown_grace_ms },
        'shutting down: draining calls in flight',
      );
      void gateway
        .close()
        .then(async () => {
          // A private Redis this process started goes down with it (its append-only file keeps the data).
          if (redis.embedded && !redis.embedded.reused) await redis.embedded.stop();
        })
        .finally(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  logger.flush();
}
