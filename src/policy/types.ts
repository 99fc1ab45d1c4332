/**
 * The compiled form of a policy document: what `decide()` reads. Produced by the loader from a
 * PolicyLayer-compatible JSON document (see schema.ts), after shorthand expansion and validation.
 */

/** Where in which file a rule lives: the file path and an RFC 6901 JSON pointer into the document. */
export interface RuleRef {
  file: string;
  pointer: string;
}

export type LimitScope = 'grant' | 'session' | 'global';

/** One rate-limit counter a call must fit under. Counters with the same name share a count. */
export interface LimitSpec {
  counter: string;
  /** Fixed window length in seconds; windows are aligned to UTC (start = floor(now / window) * window). */
  windowSeconds: number;
  max: number;
  scope: LimitScope;
  rule: RuleRef;
}

export type ConditionOp =
  | 'eq'
  | 'neq'
  | 'in'
  | 'not_in'
  | 'gt'
  | 'gte'
  | 'lt'
  | 'lte'
  | 'regex'
  | 'exists'
  | 'not_exists'
  | 'contains';

export interface Condition {
  /** Dotted path from the call, e.g. `args.repository.name` (only own properties are followed). */
  path: string;
  segments: string[];
  op: ConditionOp;
  value?: unknown;
  /** Compiled (linear-time) matcher for `regex` conditions. */
  matches?: (input: string) => boolean;
  rule: RuleRef;
}

export type ToolAction = 'allow' | 'deny' | 'require_approval';

/** How the agent's request waits while a person decides. */
export type ApprovalWait = 'hold' | 'return' | 'auto';

/** Who must approve a call, and how it waits: a rule's `approval` block with defaults applied. */
export interface ApprovalSpec {
  /** Slack channel id the request is posted to; without one, approvals go through the API/CLI only. */
  channel?: string;
  /** Slack user ids (U…/W…), user-group ids (S…) and local reviewer names. */
  reviewers: string[];
  /** Distinct approvers needed; one rejection ends it. */
  quorum: number;
  timeoutSeconds: number;
  allowSelfApproval: boolean;
  /** Pending approvals one grant may have at once. */
  maxPending: number;
  wait: ApprovalWait;
  /** `auto`: how long the request is held before answering "pending". */
  holdForSeconds: number;
  /** Argument paths (`args.a.b`) shown as "[secret]" to reviewers. */
  secretArgs: string[][];
  rule: RuleRef;
}

export interface ToolRule {
  /** The key under `tools`: an exact tool name or a glob (`*` any run, `?` one character). */
  name: string;
  isPattern: boolean;
  action: ToolAction;
  reason?: string;
  require: Condition[];
  denyIf: Condition[];
  limits: LimitSpec[];
  /** Present when calls to this tool can need a person (`action: require_approval` or `approve_if`). */
  approval?: ApprovalSpec;
  /** Conditions any of which make an otherwise allowed call need approval. */
  approveIf: Condition[];
  rule: RuleRef;
}

export interface Policy {
  file: string;
  /** Hex SHA-256 of the document's text as loaded (recorded in the audit trail). */
  sha256: string;
  defaultAction: 'allow' | 'deny';
  /** Exact names and globs removed from tools/list and refused as unknown tools. */
  hide: string[];
  allToolsLimits: LimitSpec[];
  /** Exact-name rules. A Map, never a plain object, so `__proto__` is just a tool name. */
  exact: Map<string, ToolRule>;
  /** Glob rules, longest pattern first (a longer pattern beats a shorter one). */
  patterns: ToolRule[];
}

export interface ToolCallInput {
  tool: string;
  args: Record<string, unknown>;
}

export interface DecisionContext {
  grant: { id: string; owner: string };
}

export type DenyReason =
  'no_policy' | 'hidden' | 'default_deny' | 'action_deny' | 'require_failed' | 'deny_if';

export type Decision =
  | { kind: 'allow'; rule: RuleRef; message: string; limits: LimitSpec[] }
  | {
      kind: 'require_approval';
      /** The action or the approve_if condition that asked for a person. */
      rule: RuleRef;
      message: string;
      limits: LimitSpec[];
      approval: ApprovalSpec;
      reason?: string;
    }
  | { kind: 'deny'; reason: DenyReason; rule: RuleRef; message: string };
