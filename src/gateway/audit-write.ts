import { hashArguments } from '../audit/args.js';
import type { AuditEvent } from '../audit/event.js';
import { newUlid } from '../ids/ulid.js';
import type { GatewayServices } from './services.js';

/**
 * Writes an event whose failure must not change the answer (refusals, results, lockouts, policy records).
 * While Redis is down it is spooled locally and appended when Redis returns; any other failure is logged
 * and counted.
 */
export async function writeAudit(services: GatewayServices, event: AuditEvent): Promise<void> {
  try {
    await services.auditSpool.write(event);
  } catch (error) {
    services.metrics.auditFailures.inc();
    services.logger.error(
      { err: (error as Error).message, callId: event.callId, type: event.type },
      'audit write failed',
    );
  }
}

/** An event about the gateway itself rather than a tool call: no grant, server or tool. */
export function gatewayEvent(
  time: number,
  fields: {
    type: 'auth' | 'policy';
    decision: AuditEvent['decision'];
    reason: string;
    message: string;
    subject: unknown;
  },
): AuditEvent {
  return {
    id: newUlid(),
    time: new Date(time).toISOString(),
    type: fields.type,
    callId: newUlid(),
    grant: '',
    owner: '',
    session: null,
    server: '',
    tool: '',
    argsSha256: hashArguments(fields.subject),
    decision: fields.decision,
    reason: fields.reason,
    rule: null,
    message: fields.message,
    counters: [],
  };
}
