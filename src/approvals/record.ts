import { z } from 'zod';
import type { ApprovalSpec, ApprovalWait } from '../policy/types.js';

export const APPROVAL_STATUSES = ['pending', 'approved', 'rejected', 'expired', 'cancelled'] as const;
export type ApprovalStatus = (typeof APPROVAL_STATUSES)[number];
export type ExecutionState = 'none' | 'running' | 'done' | 'interrupted';

/**
 * An approval as stored in Redis: bound to one exact call (server, tool, grant, SHA-256 of the canonical
 * arguments), the policy's approval spec as it was when the call was parked, and what happened since.
 * Times are milliseconds since the epoch.
 */
export interface ApprovalRecord {
  id: string;
  status: ApprovalStatus;
  server: string;
  tool: string;
  grant: string;
  owner: string;
  session: string;
  callId: string;
  argsSha256: string;
  /** The call's arguments (needed to show reviewers and to run the call after a restart). */
  args: Record<string, unknown>;
  /** The rule that asked for a person, as "file#pointer", and its message. */
  rule: string;
  message: string;
  channel?: string;
  reviewers: string[];
  quorum: number;
  allowSelfApproval: boolean;
  wait: ApprovalWait;
  secretArgs: string[][];
  timeoutSeconds: number;
  createdAt: number;
  expiresAt: number;
  votes: number;
  decidedBy?: string;
  decidedByName?: string;
  decidedAt?: number;
  /** The rejection's reason, when one was given. */
  decisionReason?: string;
  execution: ExecutionState;
  outcome?: string;
  /** Kept result (JSON of a CallToolResult) waiting for the agent's retry. */
  result?: string;
  delivered: boolean;
  /** MCP tasks wait for this approval: the background worker runs it once approved. */
  tasked: boolean;
  /** The execution's result kept for tasks (read as often as asked, unlike `result`). */
  taskResult?: string;
  /** The task the result belongs to (the first task that waited for this approval): single use. */
  resultTask?: string;
  /** The process that claimed the execution. */
  executor?: string;
  executionStartedAt?: number;
  executionEndedAt?: number;
  slackChannel?: string;
  slackTs?: string;
}

const num = z.coerce.number();
/**
 * The call's arguments exactly as parsed from JSON. Not z.record: it drops a `__proto__` key, and the call
 * that runs must carry exactly the arguments that were approved (and hashed).
 */
const argsObject = z.custom<Record<string, unknown>>(
  (value) => typeof value === 'object' && value !== null && !Array.isArray(value),
  { message: 'expected an object' },
);
const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === '' ? undefined : value));
const json = <T extends z.ZodType>(schema: T) =>
  z.string().transform((text, ctx) => {
    try {
      return schema.parse(JSON.parse(text)) as z.output<T>;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'invalid JSON field' });
      return z.NEVER;
    }
  });

/**
 * The call's long, fixed parts, kept as one JSON string beside the hash (`<p>approval:<id>:call`): the hash
 * then holds only short values, which Redis packs compactly (listpack), about 40% less memory per parked call.
 */
const callSchema = z.object({
  args: argsObject,
  rule: z.string(),
  message: z.string(),
  reviewers: z.array(z.string()),
  secretArgs: z.array(z.array(z.string())),
});
export type ApprovalCallParts = z.infer<typeof callSchema>;

/** Redis hash (+ call JSON) → record. Stored data is still input: a record that does not parse is unknown. */
const storedSchema = z.object({
  id: z.string(),
  status: z.enum(APPROVAL_STATUSES),
  server: z.string(),
  tool: z.string(),
  grant: z.string(),
  owner: z.string(),
  session: z.string(),
  callId: z.string(),
  argsSha256: z.string(),
  args: json(argsObject),
  rule: z.string(),
  message: z.string(),
  channel: optionalText,
  reviewers: json(z.array(z.string())),
  quorum: num,
  allowSelfApproval: z.string().transform((v) => v === '1'),
  wait: z.enum(['hold', 'return', 'auto']),
  secretArgs: json(z.array(z.array(z.string()))),
  timeoutSeconds: num,
  createdAt: num,
  expiresAt: num,
  votes: num.default(0),
  decidedBy: optionalText,
  decidedByName: optionalText,
  decidedAt: optionalText.transform((v) => (v === undefined ? undefined : Number(v))),
  decisionReason: optionalText,
  execution: z.enum(['none', 'running', 'done', 'interrupted']),
  outcome: optionalText,
  result: z.string().optional(),
  delivered: z
    .string()
    .optional()
    .transform((v) => v === '1'),
  tasked: z
    .string()
    .optional()
    .transform((v) => v === '1'),
  taskResult: z.string().optional(),
  resultTask: optionalText,
  executor: optionalText,
  executionStartedAt: optionalText.transform((v) => (v === undefined ? undefined : Number(v))),
  executionEndedAt: optionalText.transform((v) => (v === undefined ? undefined : Number(v))),
  slackChannel: optionalText,
  slackTs: optionalText,
});

export function parseStoredRecord(
  hash: Record<string, string>,
  callJson: string | null | undefined,
): ApprovalRecord | undefined {
  // Records written before the call parts moved out of the hash carry them as hash fields.
  let merged: Record<string, string> = hash;
  if (callJson) {
    let call: ApprovalCallParts;
    try {
      const parsedCall = callSchema.safeParse(JSON.parse(callJson));
      if (!parsedCall.success) return undefined;
      call = parsedCall.data;
    } catch {
      return undefined;
    }
    merged = {
      ...hash,
      args: JSON.stringify(call.args),
      rule: call.rule,
      message: call.message,
      reviewers: JSON.stringify(call.reviewers),
      secretArgs: JSON.stringify(call.secretArgs),
    };
  }
  const parsed = storedSchema.safeParse(merged);
  if (!parsed.success) return undefined;
  // Absent fields are left out (not `undefined`), without `delete`: deleting would turn every record read
  // into a slow dictionary-mode object (about 1.6 KB each, kept for as long as a request holds).
  return Object.fromEntries(
    Object.entries(parsed.data).filter(([, value]) => value !== undefined),
  ) as unknown as ApprovalRecord;
}

/** What a new record starts with (field, value pairs for HSET). */
/** What a new record's hash starts with (field, value pairs for HSET): short values only. */
export function newRecordFields(input: {
  id: string;
  server: string;
  tool: string;
  grant: string;
  owner: string;
  session: string;
  callId: string;
  argsSha256: string;
  args: Record<string, unknown>;
  rule: string;
  message: string;
  spec: ApprovalSpec;
  createdAt: number;
}): string[] {
  const { spec } = input;
  return [
    'id',
    input.id,
    'status',
    'pending',
    'server',
    input.server,
    'tool',
    input.tool,
    'grant',
    input.grant,
    'owner',
    input.owner,
    'session',
    input.session,
    'callId',
    input.callId,
    'argsSha256',
    input.argsSha256,
    'channel',
    spec.channel ?? '',
    'quorum',
    String(spec.quorum),
    'allowSelfApproval',
    spec.allowSelfApproval ? '1' : '0',
    'wait',
    spec.wait,
    'timeoutSeconds',
    String(spec.timeoutSeconds),
    'createdAt',
    String(input.createdAt),
    'expiresAt',
    String(input.createdAt + spec.timeoutSeconds * 1000),
    'votes',
    '0',
    'execution',
    'none',
  ];
}

/** The call's long, fixed parts as stored beside the hash (see callSchema). */
export function callPartsJson(input: {
  args: Record<string, unknown>;
  rule: string;
  message: string;
  spec: ApprovalSpec;
}): string {
  const parts: ApprovalCallParts = {
    args: input.args,
    rule: input.rule,
    message: input.message,
    reviewers: input.spec.reviewers,
    secretArgs: input.spec.secretArgs,
  };
  return JSON.stringify(parts);
}

/** "15m", "2h", "90s", "1d": how a duration is named in messages. */
export function formatDuration(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}
