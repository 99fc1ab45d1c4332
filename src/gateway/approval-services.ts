/**
 * Builds and stops the human-approval parts of one gateway process: the approval store, its pub/sub
 * listener, the BullMQ queue and worker, the desk where people decide, the parked calls this process
 * watches, and the Slack Web API client when Slack is configured.
 */
import { Redis } from 'ioredis';
import { approvalAudit } from '../approvals/audit.js';
import { ApprovalDesk } from '../approvals/desk.js';
import { ApprovalEvents } from '../approvals/events.js';
import { ApprovalExecutions } from '../approvals/executions.js';
import { ApprovalJobs } from '../approvals/jobs.js';
import { Parking } from '../approvals/parking.js';
import { PeopleDirectory, PersonResolver } from '../approvals/people.js';
import { formatDuration } from '../approvals/record.js';
import type { ApprovalRecord } from '../approvals/record.js';
import { ApprovalStore } from '../approvals/store.js';
import type { InflightCalls } from './inflight.js';
import type { AuditEvent } from '../audit/event.js';
import type { GatewayConfig } from '../config/load.js';
import { newUlid } from '../ids/ulid.js';
import type { Logger } from '../log/logger.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { SlackApi } from '../slack/web.js';
import type { ApprovalServices } from './services.js';
import type { ShutdownClock } from './shutdown-clock.js';

export interface ApprovalServicesOptions {
  config: GatewayConfig;
  /** The gateway's shared command connection. */
  redis: Redis;
  redisUrl: string;
  logger: Logger;
  metrics: GatewayMetrics;
  now: () => number;
  /** Writes an audit event that must not be lost (spooled while Redis is down). */
  audit: (event: AuditEvent) => Promise<void>;
  /** The Slack Web API client, when Slack is configured (see loadSlackApi). */
  slack: SlackApi | undefined;
  /** Calls in flight (shutdown waits for them): approved executions count from their claim to their end. */
  inflight: InflightCalls;
  /** The reviewers the policy in force lists for an approval's call (see DeskOptions.reviewersInForce). */
  reviewersInForce?: (record: ApprovalRecord) => readonly string[] | undefined;
}

/** The Slack Web API client for the configured workspace; its package is only loaded when Slack is configured. */
export async function loadSlackApi(
  config: GatewayConfig,
  logger: Logger,
  now: () => number,
): Promise<SlackApi | undefined> {
  if (!config.slack) return undefined;
  const { SlackApi } = await import('../slack/web.js');
  return new SlackApi(
    { botToken: config.slack.botToken, ...(config.slack.apiUrl ? { apiUrl: config.slack.apiUrl } : {}) },
    logger,
    now,
  );
}

export function createApprovalServices(options: ApprovalServicesOptions): ApprovalServices {
  const { config, logger, metrics, now, slack } = options;
  const prefix = config.raw.redis.prefix;
  const store = new ApprovalStore(
    options.redis,
    prefix,
    Math.ceil(config.raw.approvals.used_answer_ms / 1000),
  );
  // Subscriptions wait for Redis (offline queue on) and are renewed by ioredis after a reconnect.
  const subscriber = new Redis(options.redisUrl, {
    connectionName: 'countersign:approval-events',
    maxRetriesPerRequest: null,
  });
  subscriber.on('error', () => undefined);
  const events = new ApprovalEvents(subscriber, store.eventsChannel, logger);
  void events.start();
  const jobs = new ApprovalJobs({
    redisUrl: options.redisUrl,
    prefix,
    store,
    slack,
    logger,
    now,
    hooks: {
      onExpired: async (record) => {
        metrics.approvals.inc({ server: record.server, step: 'expired' });
        await options.audit(
          approvalAudit(record, now(), {
            decision: 'deny',
            reason: 'expired',
            message: `no decision within ${formatDuration(record.timeoutSeconds)}; not executed`,
          }),
        );
      },
    },
  });
  jobs.start();
  const executions = new ApprovalExecutions({ redisUrl: options.redisUrl, prefix, logger });
  const processId = `${process.pid}-${newUlid()}`;
  const directory = new PeopleDirectory(config.raw.people);
  const emailless = directory.slackPeopleWithoutEmail();
  if (emailless.length > 0)
    logger.warn(
      { people: emailless },
      'people directory: these people have a Slack id but no email listed; list their email so a vote under it counts as theirs',
    );
  const desk = new ApprovalDesk({
    store,
    jobs,
    audit: async (event) => {
      if (event.reason) metrics.approvals.inc({ server: event.server, step: event.reason });
      await options.audit(event);
    },
    groupMembers: slack
      ? (group) => slack.groupMembers(group)
      : async (group) => {
          throw new Error(`user group ${group} cannot be resolved without Slack`);
        },
    // Slack (users.info) is where a Slack user's email comes from; without Slack only the directory tells.
    people: new PersonResolver(directory, slack),
    ...(options.reviewersInForce ? { reviewersInForce: options.reviewersInForce } : {}),
    // A task's approved call runs in the background, in whichever process takes the job.
    onApproved: async (record) => {
      // If Redis refuses the job now, the recovery sweep queues it again from the awaiting index.
      if (record.tasked) await executions.enqueue(record.id).catch(() => undefined);
    },
    now,
  });
  const parking = new Parking({
    store,
    events,
    jobs,
    logger,
    processId,
    now,
    progressIntervalMs: config.raw.approvals.progress_interval_ms,
    pollMs: config.raw.approvals.poll_ms,
    track: (work) => options.inflight.track(work),
  });
  metrics.parkedSource = () => parking.size;
  return { store, events, jobs, desk, parking, processId, executions, ...(slack ? { slack } : {}) };
}

/**
 * Stops the approval machinery of a process: parked calls stay in Redis for any other process. Each part is
 * bounded by the shutdown clock (BullMQ and ioredis closes wait on Redis forever when it is unreachable).
 */
export async function closeApprovals(approvals: ApprovalServices, clock: ShutdownClock): Promise<void> {
  await clock.step('close approval background work', async () => approvals.background?.close(), 1500);
  approvals.parking.close();
  await clock.step('close approval jobs', () => approvals.jobs.close(), 1000);
  await clock.step('close approval events', () => approvals.events.close(), 500);
}
