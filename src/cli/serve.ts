import { loadConfig } from '../config/load.js';
import { startGateway } from '../gateway/gateway.js';
import type { RunningGateway } from '../gateway/gateway.js';
import type { Logger } from '../log/logger.js';
import { ensureAdminToken, resolveRedis } from './runtime.js';

/** `countersign serve`: the HTTP gateway, until SIGTERM/SIGINT, then a graceful drain. */
export async function serve(configFile: string, logger: Logger): Promise<void> {
  const config = await loadConfig(configFile);
  const redis = await resolveRedis(config, logger);
  // A private Redis this start launched goes down with it (its append-only file keeps the data); one reused
  // from an earlier start is left as it was found.
  const stopOwnRedis = async (): Promise<void> => {
    if (redis.embedded && !redis.embedded.reused) await redis.embedded.stop();
  };
  let gateway: RunningGateway;
  try {
    await ensureAdminToken(config, logger);
    gateway = await startGateway({ config, redisUrl: redis.url, logger });
  } catch (error) {
    // A start that fails (invalid policy, port in use) must not leave its redis-server running.
    await stopOwnRedis();
    exitSoon();
    throw error;
  }
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
      void gateway.close().then(stopOwnRedis).finally(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  logger.flush();
  exitSoon();
}

/**
 * The process is done: if anything still holds the event loop (a BullMQ or ioredis close abandoned because
 * Redis was unreachable keeps reconnecting), exit anyway after a moment. The timer is unref'd, so a clean
 * shutdown exits on its own first; process.exitCode (set by the CLI on an error) is kept.
 */
function exitSoon(): void {
  setTimeout(() => process.exit(), 1000).unref();
}
