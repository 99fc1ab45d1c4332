import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { InitializeRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../config/load.js';
import { closeApprovals } from '../gateway/approval-services.js';
import { createServices } from '../gateway/gateway.js';
import { reloadGateway } from '../gateway/reload.js';
import { HeldTransport } from '../gateway/held-transport.js';
import { ShutdownClock } from '../gateway/shutdown-clock.js';
import { GatewaySession } from '../gateway/session.js';
import type { Logger } from '../log/logger.js';
import { resolveRedis } from './runtime.js';

/** `countersign stdio`: one client over stdin/stdout, as the given grant, through every configured server. */
export async function stdio(configFile: string, grantId: string | undefined, logger: Logger): Promise<void> {
  const config = await loadConfig(configFile);
  const grant = config.grants.find((g) => g.id === (grantId ?? (config.anonymous ? 'local' : undefined)));
  if (!grant) {
    throw new Error(
      grantId
        ? `no grant "${grantId}" in ${configFile} (grants: ${config.grants.map((g) => g.id).join(', ')})`
        : `--grant is required: ${configFile} defines grants (${config.grants.map((g) => g.id).join(', ')})`,
    );
  }
  const redis = await resolveRedis(config, logger);
  const { services, redis: client } = await createServices({ config, redisUrl: redis.url, logger });
  const transport = new HeldTransport(new StdioServerTransport());
  const first = await transport.firstMessage();
  const init = InitializeRequestSchema.safeParse(first);
  if (!init.success) throw new Error('the first message on stdin must be an MCP initialize request');
  const session = await GatewaySession.open(services, {
    caller: { grant, sessionId: `stdio-${randomUUID()}` },
    servers: config.servers,
    clientInfo: init.data.params.clientInfo,
    clientCapabilities: init.data.params.capabilities,
  });
  await new Promise<void>((resolve) => {
    let done = false;
    const finish = async (): Promise<void> => {
      if (done) return;
      done = true;
      // Requests holding for a person have nobody to answer now; their approvals stay parked.
      await services.approvals.parking.releaseHolders();
      await services.inflight.settled(config.raw.shutdown_grace_ms);
      await session.close();
      // Bounded: with Redis unreachable, BullMQ's closes would never end.
      await closeApprovals(services.approvals, new ShutdownClock(3000, logger));
      await services.auditSpool.close();
      await services.audit.close();
      client.disconnect();
      resolve();
    };
    transport.onclose = () => void finish();
    // SIGHUP reloads grants and policies as `serve` does. This process serves one grant: when a reload revokes
    // it, the session ends (a call held for a person is let go; its approval, if given, never runs: the
    // re-check before an approved call refuses a revoked grant in every process that reloaded). An owner
    // changed by the reload is the owner of this session's calls from then on.
    process.on('SIGHUP', () => {
      let revoked = false;
      reloadGateway(services, {
        env: process.env,
        onSwap: (grants) => {
          const live = grants.find((g) => g.id === session.caller.grant.id);
          if (live) session.caller.grant = live;
          else revoked = true;
        },
      }).then(
        (summary) => {
          logger.info({ grants: summary.grants }, 'SIGHUP: policies reloaded, and the grants with them');
          if (revoked) {
            logger.warn({ grant: session.caller.grant.id }, 'grant revoked by the reload: this session ends');
            process.exitCode = 1;
            void finish();
          }
        },
        (error: Error) =>
          logger.error(
            { err: error.message },
            'SIGHUP: policies NOT reloaded, grants unchanged too (the previous ones stay in force)',
          ),
      );
    });
    process.stdin.once('end', () => void finish());
    process.once('SIGTERM', () => void finish());
    process.once('SIGINT', () => void finish());
    void session.connect(transport);
  });
}
