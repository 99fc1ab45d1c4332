import { createHash } from 'node:crypto';
/**
 * Policy loading: read → size and nesting guard → JSON.parse → validate (all issues, document order)
 * → expand shorthand (`rate_limit`, window names) → compile (regexes, paths, rule order) → check counters.
 */
import { readFile, stat } from 'node:fs/promises';
import { RE2JS } from 're2js';
import { isGlob } from './glob.js';
import { escapePointerSegment, formatIssue, fromZodIssues } from './issues.js';
import type { PolicyIssue } from './issues.js';
import { scanJsonText } from './json-text.js';
import { policyDocumentSchema, WINDOW_SECONDS } from './schema.js';
import type { RawApproval, RawCondition, RawLimit, RawRateLimit, RawPolicyDocument } from './schema.js';
import type { ApprovalSpec, Condition, LimitSpec, Policy, RuleRef, ToolRule } from './types.js';

/** Defaults of an `approval` block. */
export const APPROVAL_DEFAULTS = {
  quorum: 1,
  timeoutSeconds: 15 * 60,
  allowSelfApproval: false,
  maxPending: 5,
  wait: 'auto',
  holdForSeconds: 45,
} as const;

export type { PolicyIssue };

export const MAX_POLICY_BYTES = 1024 * 1024;
export const MAX_POLICY_DEPTH = 64;

/** Thrown for every unreadable or invalid policy; `message` has one `<file>:<path>: <message>` line per issue. */
export class PolicyError extends Error {
  readonly code = 'countersign.policy.invalid';
  constructor(readonly issues: PolicyIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.name = 'PolicyError';
  }
}

function refuse(file: string, message: string): PolicyError {
  return new PolicyError([{ file, path: '', message }]);
}

function tooLarge(file: string, bytes: number): PolicyError {
  return refuse(
    file,
    `document is ${bytes} bytes, larger than the 1 MiB (${MAX_POLICY_BYTES} bytes) limit; refusing to load it`,
  );
}

function windowSeconds(window: RawLimit['window']): number {
  return typeof window === 'number' ? window : WINDOW_SECONDS[window];
}

class Compiler {
  readonly issues: PolicyIssue[] = [];
  private readonly counters = new Map<string, LimitSpec>();

  constructor(private readonly file: string) {}

  ref(pointer: string): RuleRef {
    return { file: this.file, pointer };
  }

  limits(
    owner: { limits?: RawLimit[]; rate_limit?: RawRateLimit } | undefined,
    base: string,
    rateCounter: string,
  ): LimitSpec[] {
    const specs: LimitSpec[] = (owner?.limits ?? []).map((limit, i) => ({
      counter: limit.counter,
      windowSeconds: windowSeconds(limit.window),
      max: limit.max,
      scope: limit.scope ?? 'grant',
      rule: this.ref(`${base}/limits/${i}`),
    }));
    const rate = owner?.rate_limit;
    if (rate) {
      specs.push({
        counter: rateCounter,
        windowSeconds: windowSeconds(rate.window),
        max: rate.max,
        scope: 'grant',
        rule: this.ref(`${base}/rate_limit`),
      });
    }
    for (const spec of specs) this.checkCounter(spec);
    return specs;
  }

  /** One counter name is one count: two definitions with different windows or scopes cannot share it. */
  private checkCounter(spec: LimitSpec): void {
    const first = this.counters.get(spec.counter);
    if (!first) {
      this.counters.set(spec.counter, spec);
    } else if (first.windowSeconds !== spec.windowSeconds || first.scope !== spec.scope) {
      this.issues.push({
        file: this.file,
        path: spec.rule.pointer,
        message:
          `counter "${spec.counter}" has window ${spec.windowSeconds}s and scope ${spec.scope} here, but window ` +
          `${first.windowSeconds}s and scope ${first.scope} at ${first.rule.pointer}; a shared counter needs one window and scope`,
      });
    }
  }

  conditions(raw: RawCondition[] | undefined, base: string): Condition[] {
    return (raw ?? []).map((cond, i) => {
      const compiled: Condition = {
        path: cond.path,
        segments: cond.path.split('.').slice(1),
        op: cond.op,
        rule: this.ref(`${base}/${i}`),
      };
      if (cond.value !== undefined) compiled.value = cond.value;
      if (cond.op === 'regex') {
        const re = RE2JS.compile(cond.value);
        compiled.matches = (input) => re.test(input);
      }
      return compiled;
    });
  }

  approval(raw: RawApproval, base: string): ApprovalSpec {
    const spec: ApprovalSpec = {
      reviewers: [...raw.reviewers],
      quorum: raw.quorum ?? APPROVAL_DEFAULTS.quorum,
      timeoutSeconds: raw.timeout ?? APPROVAL_DEFAULTS.timeoutSeconds,
      allowSelfApproval: raw.allow_self_approval ?? APPROVAL_DEFAULTS.allowSelfApproval,
      maxPending: raw.max_pending ?? APPROVAL_DEFAULTS.maxPending,
      wait: raw.wait ?? APPROVAL_DEFAULTS.wait,
      holdForSeconds: raw.hold_for ?? APPROVAL_DEFAULTS.holdForSeconds,
      secretArgs: (raw.secret_args ?? []).map((path) => path.split('.').slice(1)),
      rule: this.ref(`${base}/approval`),
    };
    if (raw.channel !== undefined) spec.channel = raw.channel;
    return spec;
  }

  policy(doc: RawPolicyDocument): Omit<Policy, 'sha256'> {
    const allToolsLimits = this.limits(doc.all_tools, '/all_tools', 'all_tools_rate');
    const exact = new Map<string, ToolRule>();
    const patterns: ToolRule[] = [];
    for (const [name, raw] of doc.tools ?? new Map()) {
      const base = `/tools/${escapePointerSegment(name)}`;
      const rule: ToolRule = {
        name,
        isPattern: isGlob(name),
        action: raw.action ?? 'allow',
        require: this.conditions(raw.require, `${base}/require`),
        denyIf: this.conditions(raw.deny_if, `${base}/deny_if`),
        limits: this.limits(raw, base, `${name}_rate`),
        approveIf: this.conditions(raw.approve_if, `${base}/approve_if`),
        rule: this.ref(base),
      };
      if (raw.reason !== undefined) rule.reason = raw.reason;
      if (raw.approval) rule.approval = this.approval(raw.approval, base);
      if (rule.isPattern) patterns.push(rule);
      else exact.set(name, rule);
    }
    // Longest pattern first; the sort is stable, so equal lengths keep document order.
    patterns.sort((a, b) => b.name.length - a.name.length);
    return {
      file: this.file,
      defaultAction: doc.default,
      hide: doc.hide ?? [],
      allToolsLimits,
      exact,
      patterns,
    };
  }
}

/** Parses and compiles a policy document. Throws PolicyError listing every problem found. */
export function parsePolicy(text: string, file: string): Policy {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_POLICY_BYTES) throw tooLarge(file, bytes);
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  // Checked before JSON.parse: it locates every syntax error and refuses deep nesting up front.
  const syntax = scanJsonText(body, MAX_POLICY_DEPTH);
  if (syntax) {
    const at = `line ${syntax.line}, column ${syntax.column}`;
    throw refuse(
      file,
      syntax.kind === 'depth'
        ? `${syntax.message} (at ${at}); refusing to load it`
        : `invalid JSON at ${at}: ${syntax.message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    throw refuse(file, `invalid JSON: ${(error as Error).message}`);
  }
  const parsed = policyDocumentSchema.safeParse(json);
  if (!parsed.success) throw new PolicyError(fromZodIssues(file, json, parsed.error.issues));
  const compiler = new Compiler(file);
  const policy = compiler.policy(parsed.data);
  if (compiler.issues.length > 0) throw new PolicyError(compiler.issues);
  return { ...policy, sha256: createHash('sha256').update(text).digest('hex') };
}

/**
 * Reads and compiles a policy file. `name` is how the file is named in issues and every RuleRef
 * (default: `file`), e.g. a path relative to the gateway config. Unreadable, oversized, non-UTF-8
 * or invalid files throw PolicyError.
 */
export async function loadPolicyFile(file: string, name: string = file): Promise<Policy> {
  let bytes: Buffer;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw refuse(name, 'cannot read the policy file: not a regular file');
    if (info.size > MAX_POLICY_BYTES) throw tooLarge(name, info.size);
    bytes = await readFile(file);
  } catch (error) {
    if (error instanceof PolicyError) throw error;
    throw refuse(name, `cannot read the policy file: ${(error as Error).message}`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw refuse(name, 'file is not valid UTF-8 text');
  }
  return parsePolicy(text, name);
}

export interface PolicyCheckResult {
  file: string;
  ok: boolean;
  issues: PolicyIssue[];
}

/** For `countersign policy check`: every file is checked, and every issue of every file reported. */
export async function checkPolicyFiles(files: string[]): Promise<PolicyCheckResult[]> {
  const results: PolicyCheckResult[] = [];
  for (const file of files) {
    try {
      await loadPolicyFile(file);
      results.push({ file, ok: true, issues: [] });
    } catch (error) {
      const issues =
        error instanceof PolicyError
          ? error.issues
          : [{ file, path: '', message: `cannot check: ${String(error)}` }];
      results.push({ file, ok: false, issues });
    }
  }
  return results;
}
