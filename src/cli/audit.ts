import { auditEventSchema } from '../audit/event.js';
import type { AuditEventType } from '../audit/event.js';
import { AuditLog } from '../audit/log.js';
import { formatEvents } from '../audit/format.js';
import { loadConfig } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { createRedis, waitReady } from '../redis/client.js';
import { resolveRedis } from './runtime.js';

export interface AuditQueryOptions {
  since?: string;
  grant?: string;
  tool?: string;
  decision?: string;
  type?: string;
  limit?: string;
  json?: boolean;
}

/** `--since` takes an ISO time or a duration back from now: 30s, 15m, 2h, 7d. */
export function parseSince(value: string, now: number): Date {
  const relative = /^(\d+)\s*([smhd])$/.exec(value.trim());
  if (relative) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now - Number(relative[1]) * unit);
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime()))
    throw new Error(`--since "${value}" is neither an ISO time nor a duration like 15m, 2h, 7d`);
  return date;
}

async function withAuditLog<T>(
  configFile: string,
  logger: Logger,
  work: (log: AuditLog) => Promise<T>,
): Promise<T> {
  const config = await loadConfig(configFile);
  const target = await resolveRedis(config, logger);
  const redis = createRedis(target.url, 'audit-cli');
  redis.on('error', () => undefined);
  try {
    await waitReady(redis, 5000);
    return await work(new AuditLog({ redis, prefix: config.raw.redis.prefix }));
  } finally {
    redis.disconnect();
    if (target.embedded && !target.embedded.reused) await target.embedded.stop();
  }
}

export async function auditQuery(
  configFile: string,
  options: AuditQueryOptions,
  logger: Logger,
  out: (text: string) => void,
): Promise<number> {
  const types = auditEventSchema.shape.type.options;
  if (options.type && !(types as readonly string[]).includes(options.type)) {
    out(`--type must be one of ${types.join(', ')}`);
    return 2;
  }
  if (options.decision && !['allow', 'deny', 'pending'].includes(options.decision)) {
    out('--decision must be "allow", "deny" or "pending"');
    return 2;
  }
  const limit = options.limit ? Number(options.limit) : undefined;
  if (limit !== undefined && (!Number.isInteger(limit) || limit <= 0)) {
    out('--limit must be a positive integer');
    return 2;
  }
  const since = options.since ? parseSince(options.since, Date.now()) : undefined;
  const events = await withAuditLog(configFile, logger, (log) =>
    log.query({
      ...(since ? { since } : {}),
      ...(options.grant ? { grant: options.grant } : {}),
      ...(options.tool ? { tool: options.tool } : {}),
      ...(options.decision ? { decision: options.decision as 'allow' | 'deny' | 'pending' } : {}),
      ...(options.type ? { type: options.type as AuditEventType } : {}),
      ...(limit ? { limit } : {}),
    }),
  );
  out(formatEvents(events, Boolean(options.json)));
  return 0;
}

export async function auditVerify(
  configFile: string,
  logger: Logger,
  out: (text: string) => void,
): Promise<number> {
  const result = await withAuditLog(configFile, logger, (log) => log.verify());
  if (result.ok) {
    out(`audit trail intact: ${result.count} events, hash chain verified`);
    return 0;
  }
  out(
    `audit trail BROKEN at entry ${result.firstBad.index} (stream id ${result.firstBad.streamId}): ${result.firstBad.problem}\n` +
      `${result.count} events before it verified`,
  );
  return 1;
}
