import { z } from 'zod';

/** A rate-limit counter as touched by the call (mirrors limits' CounterUse). */
export const auditCounterSchema = z.object({
  counter: z.string(),
  scope: z.enum(['grant', 'session', 'global']),
  key: z.string(),
  count: z.number().int(),
  max: z.number(),
});

/**
 * One audit event. A call writes a `decision` event before anything happens upstream and, when it was
 * forwarded, a `result` event after; both share `callId`.
 *
 * Arguments: `argsSha256` is always present (hex SHA-256 of their RFC 8785 canonical JSON, the same hash
 * approvals bind to). The arguments themselves (`args`) are kept only when the operator opted in; otherwise
 * `argsRedacted` keeps their shape (keys, array lengths, booleans, nulls) with every string and number
 * replaced by "[redacted]" — enough to see what kind of call it was, never a value. Either one weighs at most
 * MAX_AUDIT_ARGUMENTS_BYTES (8 KiB of JSON); beyond that it is `{ truncated: true, bytes, preview }` (see
 * audit/args.ts), and names and texts are cut too (audit/event-bounds.ts), so no event outgrows a fixed size.
 *
 * Unknown keys are accepted (not stripped) so a trail written by a newer version still verifies.
 */
export const auditEventSchema = z.object({
  id: z.ulid(),
  time: z.iso.datetime({ offset: true }),
  /**
   * `auth`: a client was locked out after too many wrong bearer tokens; `policy`: the policies in force
   * (at start and after each reload), with their hashes in `message`. For both, server and tool are empty.
   * `approval`: a step of a human approval (reason approval_requested, approval_vote, approved, rejected,
   * expired, cancelled, reviewer_refused), with `approvalId` and, for a person's action, `reviewer`.
   * `protocol`: a JSON-RPC message refused before any policy decision (see gateway/protocol-refusal.ts),
   * with `method`; its strings are bounded in size and it keeps no params.
   */
  type: z.enum(['decision', 'result', 'auth', 'policy', 'approval', 'protocol']),
  callId: z.ulid(),
  grant: z.string(),
  owner: z.string(),
  session: z.string().nullable(),
  server: z.string(),
  tool: z.string(),
  argsSha256: z.string().regex(/^[0-9a-f]{64}$/, 'a hex SHA-256'),
  args: z.unknown().optional(),
  argsRedacted: z.unknown().optional(),
  /** `pending` while a call waits for a person (approval events). */
  decision: z.enum(['allow', 'deny', 'pending']),
  /** Why: 'allowed', or a deny reason code such as 'default_deny', 'rate_limited', 'store_unavailable'. */
  reason: z.string().nullable(),
  /** The policy rule that matched, as "file#pointer". */
  rule: z.string().nullable(),
  message: z.string().nullable(),
  counters: z.array(auditCounterSchema),
  /** Result events only. */
  outcome: z.enum(['ok', 'tool_error', 'upstream_error', 'interrupted', 'task_created']).optional(),
  /** Result events only: time spent upstream. */
  durationMs: z.number().nonnegative().optional(),
  error: z.string().optional(),
  /** Calls that needed a person: the approval they were parked under. */
  approvalId: z.string().optional(),
  /** Approval events: who acted ("U123 (alice)" from Slack, or the name given to the API). */
  reviewer: z.string().optional(),
  /** Protocol events: the JSON-RPC method refused (cut to at most 128 characters). */
  method: z.string().optional(),
});

export type AuditEvent = z.infer<typeof auditEventSchema>;
export type AuditCounter = z.infer<typeof auditCounterSchema>;
export type AuditEventType = AuditEvent['type'];
export type AuditOutcome = NonNullable<AuditEvent['outcome']>;
