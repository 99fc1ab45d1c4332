import type { Decision, LimitSpec, RuleRef } from './types.js';

function where(rule: RuleRef): string {
  if (!rule.file && !rule.pointer) return '(none)';
  return `${rule.file}#${rule.pointer}`;
}

function windowText(seconds: number): string {
  const named: Record<number, string> = { 1: 'second', 60: 'minute', 3600: 'hour', 86400: 'day' };
  const name = named[seconds];
  return name ? `${seconds}s (1 ${name})` : `${seconds}s`;
}

function limitLine(limit: LimitSpec): string {
  return `  - ${limit.counter}: max ${limit.max} per ${windowText(limit.windowSeconds)}, scope ${limit.scope} (${where(limit.rule)})`;
}

/**
 * The text `countersign policy explain` prints:
 *
 *     decision: allow
 *     rule:     policies/x.json#/tools/echo
 *     message:  tool echo is allowed by rule /tools/echo
 *     limits:
 *       - echo_rate: max 600 per 60s (1 minute), scope grant (policies/x.json#/tools/echo/rate_limit)
 */
export function explainDecision(decision: Decision): string {
  const lines = [
    decision.kind === 'deny' ? `decision: deny (${decision.reason})` : `decision: ${decision.kind}`,
    `rule:     ${where(decision.rule)}`,
    `message:  ${decision.message}`,
  ];
  if (decision.kind === 'require_approval') {
    const a = decision.approval;
    lines.push(
      `approval: ${a.quorum} of ${a.reviewers.join(', ')}${a.channel ? ` in ${a.channel}` : ' (API/CLI only: no channel)'}; ` +
        `expires after ${a.timeoutSeconds}s; wait ${a.wait}${a.wait === 'auto' ? ` (hold ${a.holdForSeconds}s)` : ''}; ` +
        `self-approval ${a.allowSelfApproval ? 'allowed' : 'refused'}; max ${a.maxPending} pending per grant`,
    );
  }
  if (decision.kind !== 'deny') {
    if (decision.limits.length === 0) lines.push('limits:   none');
    else lines.push('limits:', ...decision.limits.map(limitLine));
  }
  return lines.join('\n');
}
