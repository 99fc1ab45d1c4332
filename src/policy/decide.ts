/**
 * The policy decision, a pure function: no I/O, no clock. The gateway, `policy explain` and `policy test`
 * all call this one. Order: no policy → hidden → rule lookup (or default) → action deny → require → deny_if
 * → action require_approval / approve_if → allow. Argument rules run first, so a call that would be refused
 * anyway never reaches a reviewer.
 */
import { describeCondition, evaluateCondition, isPathMissing } from './conditions.js';
import { matchGlob } from './glob.js';
import type {
  Condition,
  Decision,
  DecisionContext,
  DenyReason,
  Policy,
  RuleRef,
  ToolCallInput,
  ToolRule,
} from './types.js';

const NO_RULE: RuleRef = { file: '', pointer: '' };

function deny(reason: DenyReason, rule: RuleRef, message: string): Decision {
  return { kind: 'deny', reason, rule, message };
}

/** Index of the first `hide` entry (exact name or glob) that matches, or -1. */
function hiddenBy(policy: Policy, tool: string): number {
  return policy.hide.findIndex((entry) => matchGlob(entry, tool));
}

export function isHidden(policy: Policy, tool: string): boolean {
  return hiddenBy(policy, tool) >= 0;
}

/**
 * The tools a client may see: hidden ones are removed; denied-but-visible tools stay listed, so a call
 * gets a readable refusal. Without a policy nothing is hidden here (every call is denied anyway).
 */
export function visibleTools(policy: Policy | undefined, names: string[]): string[] {
  return policy ? names.filter((name) => !isHidden(policy, name)) : [...names];
}

/** Exact name beats any pattern; among patterns the longest wins, ties by document order (pre-sorted). */
export function findRule(policy: Policy, tool: string): ToolRule | undefined {
  return policy.exact.get(tool) ?? policy.patterns.find((rule) => matchGlob(rule.name, tool));
}

/** Evaluates a condition; an unexpected failure counts as `onError` so the decision fails closed. */
function holds(cond: Condition, args: unknown, onError: boolean): boolean {
  try {
    return evaluateCondition(cond, args);
  } catch {
    return onError;
  }
}

function withReason(tool: string, what: string, reason: string | undefined): string {
  return reason ? `call to ${tool} refused: ${reason} (${what})` : `call to ${tool} refused: ${what}`;
}

function missingPath(cond: Condition, args: unknown): boolean {
  try {
    return isPathMissing(cond, args);
  } catch {
    return false;
  }
}

export function decide(policy: Policy | undefined, call: ToolCallInput, ctx: DecisionContext): Decision {
  const tool = call.tool;
  if (!policy)
    return deny('no_policy', NO_RULE, `no policy applies to grant ${ctx.grant.id}; every call is denied`);
  const ref = (pointer: string): RuleRef => ({ file: policy.file, pointer });

  const hidden = hiddenBy(policy, tool);
  if (hidden >= 0) return deny('hidden', ref(`/hide/${hidden}`), `tool ${tool} is not available`);

  const rule = findRule(policy, tool);
  if (!rule) {
    if (policy.defaultAction === 'deny') {
      return deny(
        'default_deny',
        ref('/default'),
        `tool ${tool} is not allowed by this policy (default: deny)`,
      );
    }
    return {
      kind: 'allow',
      rule: ref('/default'),
      message: `tool ${tool} is allowed by this policy (default: allow)`,
      limits: [...policy.allToolsLimits],
    };
  }

  if (rule.action === 'deny') {
    const what = `tool ${tool} is denied by this policy`;
    return deny(
      'action_deny',
      ref(`${rule.rule.pointer}/action`),
      rule.reason ? `${what}: ${rule.reason}` : what,
    );
  }

  const args: unknown = call.args ?? {};
  for (const cond of rule.require) {
    if (!holds(cond, args, false)) {
      const missing = missingPath(cond, args) ? `; ${cond.path} is missing` : '';
      const what = `requirement not met: ${describeCondition(cond)}${missing}`;
      return deny('require_failed', cond.rule, withReason(tool, what, rule.reason));
    }
  }
  for (const cond of rule.denyIf) {
    if (holds(cond, args, true)) {
      return deny(
        'deny_if',
        cond.rule,
        withReason(tool, `deny_if matched: ${describeCondition(cond)}`, rule.reason),
      );
    }
  }
  const limits = [...policy.allToolsLimits, ...rule.limits];
  const needsPerson = (at: RuleRef, what: string): Decision => {
    if (!rule.approval) {
      // The loader never compiles such a rule; should one appear, refuse rather than run the call unreviewed.
      return deny(
        'action_deny',
        at,
        `tool ${tool} needs human approval but names no reviewers; not executed`,
      );
    }
    const message = `call to ${tool} needs human approval: ${what}`;
    return {
      kind: 'require_approval',
      rule: at,
      message: rule.reason ? `${message} (${rule.reason})` : message,
      limits,
      approval: rule.approval,
      ...(rule.reason !== undefined ? { reason: rule.reason } : {}),
    };
  };
  if (rule.action === 'require_approval') {
    return needsPerson(ref(`${rule.rule.pointer}/action`), 'every call to this tool is reviewed');
  }
  for (const cond of rule.approveIf) {
    // An approve_if that cannot be evaluated asks a person rather than letting the call through.
    if (holds(cond, args, true))
      return needsPerson(cond.rule, `approve_if matched: ${describeCondition(cond)}`);
  }
  return {
    kind: 'allow',
    rule: rule.rule,
    message: `tool ${tool} is allowed by rule ${rule.rule.pointer}`,
    limits,
  };
}
