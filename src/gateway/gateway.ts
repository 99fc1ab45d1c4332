import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import { closeApprovals, createApprovalServices, loadSlackApi } from './approval-services.js';
import { reviewersInForce } from './approval-recheck.js';
import { startApprovalBackground } from './approval-background.js';
import { approvalsApi } from '../http/approvals-api.js';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { AuditLog } from '../audit/log.js';
import { AuditSpool } from '../audit/spool.js';
import type { GatewayConfig } from '../config/load.js';
import { createHttpHandler } from '../http/app.js';
import { AuthThrottle } from '../http/auth-throttle.js';
import { GrantAuthenticator } from '../http/guards.js';
import { McpHttpEndpoint } from '../http/mcp-endpoint.js';
import { metricsEndpoint } from '../http/metrics-endpoint.js';
import { LimitCounters } from '../limits/counters.js';
import type { Logger } from '../log/logger.js';
import { GatewayMetrics } from '../metrics/metrics.js';
import { createRedis, waitReady } from '../redis/client.js';
import { writeAudit } from './audit-write.js';
import { InflightCalls } from './inflight.js';
import { PolicyBook } from './policy-book.js';
import { recordInForce, reloadGateway } from './reload.js';
import type { ReloadSummary } from './reload.js';
import { TaskStore } from '../tasks/store.js';
import { ShutdownClock } from './shutdown-clock.js';
import type { GatewayServices } from './services.js';

/** The most any one shutdown step may wait (a step waiting longer is waiting on an unreachable Redis). */
const STEP_CAP_MS = 1000;
/** What closing everything after the grace period may take in all. */
const CLOSE_BUDGET_MS = 3000;

export interface GatewayOptions {
  config: GatewayConfig;
  redisUrl: string;
  logger: Logger;
  now?: () => number;
  /** The environment a reload reads the config file with (`token_env` grants); default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** The services of one gateway process, without any listener (shared by `serve` and `stdio`). */
export async function createServices(
  options: GatewayOptions,
): Promise<{ services: GatewayServices; redis: Redis }> {
  const { config, logger } = options;
  const policies = await PolicyBook.load(config);
  const redis = createRedis(options.redisUrl, 'gateway');
  let lastRedisError = '';
  redis.on('error', (error: Error) => {
    if (error.message !== lastRedisError) logger.warn({ err: error.message }, 'redis connection error');
    lastRedisError = error.message;
  });
  redis.on('ready', () => {
    if (lastRedisError) logger.info('redis connection restored');
    lastRedisError = '';
  });
  try {
    await waitReady(redis, 5000);
  } catch {
    logger.warn('Redis is not reachable yet: every call will be refused until it is (fail closed)');
  }
  const prefix = config.raw.redis.prefix;
  const audit = new AuditLog({ redis, prefix, jsonlPath: config.auditJsonl, logger });
  const spoolFile = path.resolve(
    config.raw.data_dir,
    `audit-spool-${createHash('sha256').update(prefix).digest('hex').slice(0, 12)}.jsonl`,
  );
  const auditSpool = new AuditSpool(audit, spoolFile, logger);
  // Events an earlier process could not write (Redis was down) go into the trail first.
  void auditSpool
    .drain()
    .catch((error: Error) => logger.error({ err: error.message }, 'cannot read the audit spool'));
  const now = options.now ?? Date.now;
  const metrics = new GatewayMetrics();
  // Approval events are written once the services exist (the writer needs them to spool).
  const ref: { services?: GatewayServices } = {};
  const inflight = new InflightCalls();
  const approvals = createApprovalServices({
    config,
    redis,
    redisUrl: options.redisUrl,
    logger,
    metrics,
    now,
    audit: (event) => (ref.services ? writeAudit(ref.services, event) : Promise.resolve()),
    slack: await loadSlackApi(config, logger, now),
    inflight,
    // Read when someone decides: the grants and policies in force then (a reload swaps them).
    reviewersInForce: (record) => {
      const live = ref.services;
      if (!live) return undefined;
      return reviewersInForce(
        record,
        live.config.grants.find((g) => g.id === record.grant),
        live.policies.resolve(record.server, record.grant),
      );
    },
  });
  const services: GatewayServices = {
    config,
    policies,
    limits: new LimitCounters(redis, prefix),
    audit,
    auditSpool,
    metrics,
    logger,
    inflight,
    approvals,
    tasks: new TaskStore(redis, prefix),
    now,
  };
  ref.services = services;
  approvals.background = await startApprovalBackground(services);
  return { services, redis };
}

export interface RunningGateway {
  url: string;
  services: GatewayServices;
  /**
   * Reads the config file and every policy again and swaps the grants and policies in at once (see reload.ts):
   * a revoked grant's token is refused from the next request on, its sessions end, and its parked calls never
   * run. If any file is invalid, nothing changes and the error lists every problem. Settings that need a restart
   * are named in the summary (and logged) and keep their running values.
   */
  reload(): Promise<ReloadSummary>;
  /** Stops taking sessions, waits for calls in flight up to the grace period, then closes everything. */
  close(): Promise<void>;
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const { services, redis } = await createServices(options);
  const { config } = options;
  const throttle = new AuthThrottle(
    redis,
    config.raw.redis.prefix,
    config.raw.http.auth_failures,
    services.now,
  );
  const mcp = new McpHttpEndpoint(
    services,
    // Reads the grants in force at each request: a reload swaps services.config.
    new GrantAuthenticator(() => services.config),
    throttle,
  );
  const slackApi = services.approvals.slack;
  const slackReceiver =
    config.slack && slackApi
      ? // Slack's Bolt app (and its packages) is loaded only when Slack is configured.
        (await import('../slack/app.js')).createSlackApp({
          config: config.slack,
          api: slackApi,
          desk: services.approvals.desk,
          store: services.approvals.store,
          logger: options.logger,
          now: services.now,
        })
      : undefined;
  const handler = createHttpHandler(
    services,
    mcp,
    {
      check: async () => {
        const checks: Record<string, string> = {};
        try {
          checks.redis = (await redis.ping()) === 'PONG' ? 'ok' : 'unexpected reply';
        } catch (error) {
          checks.redis = `unavailable: ${(error as Error).message}`;
        }
        return { ready: checks.redis === 'ok', checks };
      },
    },
    {
      api: approvalsApi(services, config.adminToken, throttle),
      metrics: metricsEndpoint(services, config.metricsToken, throttle),
      ...(slackReceiver?.router && slackReceiver.guard
        ? { slack: { router: slackReceiver.router, guard: slackReceiver.guard } }
        : {}),
    },
  );
  await slackReceiver?.start();
  const { host, port } = config.raw.listen;
  const http: HttpServer = await new Promise((resolve, reject) => {
    const server = createHttpServer(handler);
    server.listen(port, host, () => resolve(server));
    server.once('error', reject);
  });
  const address = http.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${shownHost}:${address.port}`;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const grace = config.raw.shutdown_grace_ms;
      // The grace period counts from the signal; every step that may wait on Redis is bounded (shutdown-clock.ts).
      const graceClock = new ShutdownClock(grace, options.logger);
      mcp.stopAccepting();
      // Requests holding for a person are told "pending" (their approvals stay parked in Redis).
      let released = 0;
      await graceClock.step(
        'answer held requests',
        async () => {
          released = await services.approvals.parking.releaseHolders();
        },
        STEP_CAP_MS,
      );
      // Let those answers reach the wire before the sessions close.
      if (released > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      // No new approved calls start here; those running finish within the grace period.
      await graceClock.step(
        'pause approved-call worker',
        () => services.approvals.executions.pause(),
        STEP_CAP_MS,
      );
      if (!(await services.inflight.settled(graceClock.remaining)))
        options.logger.warn(
          { inflight: services.inflight.size },
          'grace period over; closing with calls in flight',
        );
      // What follows gets a fixed budget of its own: with Redis gone, it ends anyway.
      const closeClock = new ShutdownClock(CLOSE_BUDGET_MS, options.logger);
      await closeClock.step('close MCP sessions', () => mcp.close(), STEP_CAP_MS);
      await closeClock.step('stop Slack receiver', async () => slackReceiver?.stop(), STEP_CAP_MS);
      await closeApprovals(services.approvals, closeClock);
      await closeClock.step(
        'close HTTP server',
        () =>
          new Promise<void>((resolve) => {
            http.close(() => resolve());
            http.closeAllConnections();
          }),
        STEP_CAP_MS,
      );
      // Events that cannot reach Redis now stay in the spool file under data_dir for the next start.
      await closeClock.step('drain audit spool', () => services.auditSpool.close(), STEP_CAP_MS);
      await closeClock.step('close audit log', () => services.audit.close(), STEP_CAP_MS);
      redis.disconnect();
    })();
    return closing;
  };
  const reload = (): Promise<ReloadSummary> =>
    reloadGateway(services, {
      env: options.env ?? process.env,
      onSwap: (grants) => {
        mcp.grantsChanged(grants);
        mcp.notifyToolListChanged();
      },
    });
  await recordInForce(services, 'loaded');
  return { url, services, close, reload };
}
