/**
 * The raw policy document, PolicyLayer-compatible:
 * `{version: "1", default, hide?, all_tools?, tools?, description?}`.
 * Every object is strict: in a security policy a typo such as `deny-if` must be an error, never ignored.
 */
import { RE2JS } from 're2js';
import { z } from 'zod';

export const WINDOW_SECONDS = { second: 1, minute: 60, hour: 3600, day: 86400 } as const;

export const CONDITION_OPS = [
  'eq',
  'neq',
  'in',
  'not_in',
  'gt',
  'gte',
  'lt',
  'lte',
  'regex',
  'exists',
  'not_exists',
  'contains',
] as const;

/** The keys each kind of object accepts, used to name them (and suggest one) when a key is unknown. */
export const KNOWN_KEYS = {
  document: ['version', 'default', 'hide', 'all_tools', 'tools', 'description'],
  allTools: ['limits', 'rate_limit'],
  rule: [
    'action',
    'reason',
    'require',
    'deny_if',
    'limits',
    'rate_limit',
    'approval',
    'approve_if',
    'description',
  ],
  limit: ['counter', 'window', 'max', 'scope'],
  approval: [
    'channel',
    'reviewers',
    'quorum',
    'timeout',
    'allow_self_approval',
    'max_pending',
    'wait',
    'hold_for',
    'secret_args',
  ],
  rateLimit: ['max', 'window'],
  condition: ['path', 'op', 'value'],
} as const;

function describeInput(input: unknown): string {
  if (input === undefined) return 'nothing';
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'an array';
  if (typeof input === 'object') return 'an object';
  if (typeof input === 'string') return JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input);
  return String(input);
}

/** Error messages state what was expected (and what was found), or that a required key is missing. */
function expected(what: string) {
  return (issue: { input?: unknown }): string =>
    issue.input === undefined
      ? `missing; expected ${what}`
      : `expected ${what}, got ${describeInput(issue.input)}`;
}

const positiveInt = (what: string) =>
  z
    .number({ error: expected(what) })
    .int({ error: expected(what) })
    .positive({ error: expected(what) });

const WINDOW_TEXT = '"second", "minute", "hour", "day" or a positive whole number of seconds';
export const windowSchema = z.union([z.enum(['second', 'minute', 'hour', 'day']), positiveInt(WINDOW_TEXT)], {
  error: expected(WINDOW_TEXT),
});

export const limitSchema = z.strictObject(
  {
    counter: z.string({ error: expected('a counter name') }).regex(/^[A-Za-z0-9_.:-]+$/, {
      error: expected('a non-empty counter name of letters, digits and _ . : -'),
    }),
    window: windowSchema,
    max: positiveInt('a positive whole number'),
    scope: z
      .enum(['grant', 'session', 'global'], { error: expected('"grant", "session" or "global"') })
      .optional(),
  },
  { error: expected('a limit object {counter, window, max, scope?}') },
);

export const rateLimitSchema = z.strictObject(
  { max: positiveInt('a positive whole number'), window: windowSchema },
  { error: expected('a rate limit object {max, window}') },
);

const conditionPath = z.string({ error: expected('a path such as "args.name"') }).regex(/^args(\.[^.]+)+$/, {
  error: expected('a dotted path starting with "args", such as "args.repository.name"'),
});

const jsonValue = (op: string) =>
  z
    .unknown()
    .refine((value) => value !== undefined, { error: `missing; "${op}" needs a value to compare with` });

function conditionWith<Op extends string, V extends z.ZodType>(op: Op, value: V) {
  return z.strictObject({ path: conditionPath, op: z.literal(op), value });
}

const numberValue = (op: string) => z.number({ error: expected(`a number ("${op}" compares numbers)`) });
const arrayValue = (op: string) =>
  z.array(z.unknown(), { error: expected(`an array ("${op}" tests membership)`) });
const noValue = (op: string) => z.never({ error: `"${op}" takes no value; remove "value"` }).optional();

export const regexValue = z
  .string({ error: expected('a regular expression string (RE2 syntax)') })
  .superRefine((source, ctx) => {
    try {
      RE2JS.compile(source);
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        message: `regular expression does not compile (RE2 syntax: no lookaround or backreferences): ${(error as Error).message}`,
      });
    }
  });

export const conditionSchema = z.discriminatedUnion(
  'op',
  [
    conditionWith('eq', jsonValue('eq')),
    conditionWith('neq', jsonValue('neq')),
    conditionWith('contains', jsonValue('contains')),
    conditionWith('in', arrayValue('in')),
    conditionWith('not_in', arrayValue('not_in')),
    conditionWith('gt', numberValue('gt')),
    conditionWith('gte', numberValue('gte')),
    conditionWith('lt', numberValue('lt')),
    conditionWith('lte', numberValue('lte')),
    conditionWith('regex', regexValue),
    conditionWith('exists', noValue('exists')),
    conditionWith('not_exists', noValue('not_exists')),
  ],
  {
    error: (issue) =>
      issue.code === 'invalid_union'
        ? `expected "op" to be one of ${CONDITION_OPS.join(', ')}`
        : expected('a condition object {path, op, value?}')(issue),
  },
);

const conditionList = z.array(conditionSchema, { error: expected('a list of conditions') });

const DURATION_TEXT = 'a duration such as "90s", "15m", "2h", "1d" or a positive whole number of seconds';
/** Durations in seconds: "90s", "15m", "2h", "1d", or a number of seconds. */
export const durationSchema = z.union(
  [
    positiveInt(DURATION_TEXT),
    z
      .string()
      .regex(/^[1-9][0-9]{0,6}[smhd]$/)
      .transform(
        (text) => Number(text.slice(0, -1)) * { s: 1, m: 60, h: 3600, d: 86400 }[text.slice(-1) as 's'],
      ),
  ],
  { error: expected(DURATION_TEXT) },
);

/** A Slack user (U…/W…), a Slack user group (S…), or a local reviewer name used with the approvals API/CLI. */
export const reviewerSchema = z
  .string({ error: expected('a reviewer: a Slack user id (U…), a user-group id (S…) or a local name') })
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/, {
    error: expected(
      'a reviewer: a Slack user id (U…), a user-group id (S…) or a local name of letters, digits and . _ @ + -',
    ),
  });

export const approvalSchema = z
  .strictObject(
    {
      channel: z
        .string({ error: expected('a Slack channel id such as "C0123456789"') })
        .regex(/^[CGD][A-Z0-9]+$/, { error: expected('a Slack channel id such as "C0123456789"') })
        .optional(),
      reviewers: z
        .array(reviewerSchema, { error: expected('a list of reviewers') })
        .min(1, { error: 'expected at least one reviewer' }),
      quorum: positiveInt('a positive whole number of distinct approvers').optional(),
      timeout: durationSchema.optional(),
      allow_self_approval: z.boolean({ error: expected('true or false') }).optional(),
      max_pending: positiveInt('a positive whole number').optional(),
      wait: z.enum(['hold', 'return', 'auto'], { error: expected('"hold", "return" or "auto"') }).optional(),
      hold_for: durationSchema.optional(),
      secret_args: z
        .array(conditionPath, { error: expected('a list of argument paths such as "args.token"') })
        .optional(),
    },
    { error: expected('an approval object {reviewers, channel?, quorum?, timeout?, ...}') },
  )
  .superRefine((approval, ctx) => {
    const people = approval.reviewers.filter((r) => !/^S[A-Z0-9]+$/.test(r)).length;
    const hasGroup = people < approval.reviewers.length;
    if (approval.quorum !== undefined && !hasGroup && approval.quorum > people) {
      ctx.addIssue({
        code: 'custom',
        path: ['quorum'],
        message: `quorum ${approval.quorum} can never be reached: only ${people} reviewer(s) are listed`,
      });
    }
    if (approval.hold_for !== undefined && approval.wait !== undefined && approval.wait !== 'auto') {
      ctx.addIssue({
        code: 'custom',
        path: ['hold_for'],
        message: 'hold_for only applies when wait is "auto"',
      });
    }
  });
const limitList = z.array(limitSchema, { error: expected('a list of limits') });

export const toolRuleSchema = z
  .strictObject(
    {
      action: z
        .enum(['allow', 'deny', 'require_approval'], {
          error: expected('"allow", "deny" or "require_approval"'),
        })
        .optional(),
      reason: z.string({ error: expected('a string') }).optional(),
      require: conditionList.optional(),
      deny_if: conditionList.optional(),
      limits: limitList.optional(),
      rate_limit: rateLimitSchema.optional(),
      approval: approvalSchema.optional(),
      approve_if: conditionList.optional(),
      description: z.string({ error: expected('a string') }).optional(),
    },
    { error: expected('a rule object (use {} to allow the tool as is)') },
  )
  .superRefine((rule, ctx) => {
    const needsApproval = rule.action === 'require_approval' || rule.approve_if !== undefined;
    if (needsApproval && !rule.approval) {
      ctx.addIssue({
        code: 'custom',
        path: ['approval'],
        message:
          'missing; a rule that needs human approval must name its reviewers in "approval": {"reviewers": [...]}',
      });
    }
    if (rule.approval && !needsApproval) {
      ctx.addIssue({
        code: 'custom',
        path: ['approval'],
        message: 'an approval block only applies with "action": "require_approval" or "approve_if"',
      });
    }
    if (rule.approve_if !== undefined && rule.action !== undefined && rule.action !== 'allow') {
      ctx.addIssue({
        code: 'custom',
        path: ['approve_if'],
        message: `approve_if applies to allowed calls; with "action": "${rule.action}" remove it`,
      });
    }
  });

export type RawToolRule = z.output<typeof toolRuleSchema>;
export type RawLimit = z.output<typeof limitSchema>;
export type RawRateLimit = z.output<typeof rateLimitSchema>;
export type RawCondition = z.output<typeof conditionSchema>;
export type RawApproval = z.output<typeof approvalSchema>;

/**
 * `tools` is validated key by key into a Map rather than with z.record, which drops a key named
 * `__proto__`: every own key is a tool name, whatever it is called.
 */
export const toolsSchema = z.unknown().transform((input, ctx) => {
  const rules = new Map<string, RawToolRule>();
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    ctx.addIssue({
      code: 'custom',
      message: expected('an object mapping tool names or globs to rules')({ input }),
    });
    return rules;
  }
  for (const name of Object.keys(input)) {
    if (name === '') ctx.addIssue({ code: 'custom', path: [name], message: 'a tool name must not be empty' });
    const parsed = toolRuleSchema.safeParse(Object.getOwnPropertyDescriptor(input, name)?.value);
    if (parsed.success) rules.set(name, parsed.data);
    else for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: [name, ...issue.path] });
  }
  return rules;
});

export const policyDocumentSchema = z.strictObject(
  {
    version: z.literal('1', { error: expected('"1"') }),
    default: z.enum(['allow', 'deny'], { error: expected('"allow" or "deny"') }),
    hide: z
      .array(
        z
          .string({ error: expected('a tool name or glob') })
          .min(1, { error: 'expected a non-empty tool name or glob' }),
        {
          error: expected('a list of tool names or globs'),
        },
      )
      .optional(),
    all_tools: z
      .strictObject(
        { limits: limitList.optional(), rate_limit: rateLimitSchema.optional() },
        { error: expected('an object {limits?, rate_limit?}') },
      )
      .optional(),
    tools: toolsSchema.optional(),
    description: z.string({ error: expected('a string') }).optional(),
  },
  { error: expected('a policy object {"version": "1", "default": "allow" | "deny", ...}') },
);

export type RawPolicyDocument = z.output<typeof policyDocumentSchema>;
