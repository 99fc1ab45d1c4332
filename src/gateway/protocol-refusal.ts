import { hashArguments } from '../audit/args.js';
import { wellFormed } from '../audit/chain.js';
import type { AuditEvent } from '../audit/event.js';
import { newUlid } from '../ids/ulid.js';
import { writeAudit } from './audit-write.js';
import { boundedText } from './methods.js';
import type { CallerIdentity, GatewayServices } from './services.js';

/**
 * Why a JSON-RPC message was refused before any policy decision. Each is one `protocol` audit event, so an
 * operator sees a client probing the gateway.
 */
export type ProtocolRefusalReason =
  /** A request whose method is not on the allow-list (or differs from one in case). */
  | 'unknown_method'
  /** A notification whose method is not on the allow-list: request-shaped (`tools/call`) or unknown. */
  | 'notification_refused'
  /** A known request whose params do not match its schema (e.g. tools/call with non-object arguments). */
  | 'invalid_params'
  /** A task-augmented tools/call for a tool listed without task support. */
  | 'task_not_supported'
  /** A POSTed batch with more messages than the transport takes. */
  | 'batch_too_large'
  /** A request id used twice in one batch, or still in use by an unanswered request of the session. */
  | 'duplicate_request_id'
  /** A message inside a session that is not JSON-RPC at all. */
  | 'invalid_message';

/** The bounds on what a client chose: the whole event stays well under PROTOCOL_EVENT_MAX_BYTES. */
export const MAX_METHOD_CHARS = 128;
export const MAX_TOOL_CHARS = 128;
export const MAX_MESSAGE_CHARS = 512;
/** What one protocol event weighs at most, serialized (with escapes of a hostile method name). */
export const PROTOCOL_EVENT_MAX_BYTES = 8192;

export interface ProtocolRefusal {
  caller: CallerIdentity;
  /** The server of `/mcp/<server>`, or '' for `/mcp` (several servers) when no tool name says which. */
  server: string;
  /** The refused message's method, as the client wrote it ('' when it had none). */
  method: string;
  /** For a refused tools/call: the tool name the client gave. */
  tool?: string;
  reason: ProtocolRefusalReason;
  /** What the client was told. */
  message: string;
}

/** The audit event of one refusal. Keeps no params: only bounded method, tool and message strings. */
export function protocolRefusalEvent(time: number, refusal: ProtocolRefusal): AuditEvent {
  // Lone surrogates (which canonical JSON cannot encode) become U+FFFD: a hostile name never loses the event.
  const bounded = (text: string, max: number): string => wellFormed(boundedText(text, max));
  const method = bounded(refusal.method, MAX_METHOD_CHARS);
  return {
    id: newUlid(),
    time: new Date(time).toISOString(),
    type: 'protocol',
    callId: newUlid(),
    grant: refusal.caller.grant.id,
    owner: refusal.caller.grant.owner,
    session: refusal.caller.sessionId,
    server: refusal.server,
    tool: bounded(refusal.tool ?? '', MAX_TOOL_CHARS),
    // Nothing of the params is kept, so the hash covers what is: the (bounded) method and the reason.
    argsSha256: hashArguments({ method, reason: refusal.reason }),
    decision: 'deny',
    reason: refusal.reason,
    rule: null,
    message: bounded(refusal.message, MAX_MESSAGE_CHARS),
    counters: [],
    method,
  };
}

/**
 * Audits one protocol refusal without holding up the answer: written through the audit spool (kept while
 * Redis is away; a failure is logged and counted, never changes the answer), and tracked as in flight so a
 * shutdown waits for it.
 */
export function auditProtocolRefusal(services: GatewayServices, refusal: ProtocolRefusal): void {
  const event = protocolRefusalEvent(services.now(), refusal);
  void services.inflight.track(() => writeAudit(services, event));
}
