import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { RuleRef } from '../policy/types.js';

/** Key of the machine-readable decision in a refused call's `_meta`. */
export const DECISION_META_KEY = 'countersign/decision';

export interface RefusalDetail {
  /** Machine-readable reason code: default_deny, deny_if, rate_limited, store_unavailable, ... */
  reason: string;
  message: string;
  rule?: RuleRef;
  retryAfterSeconds?: number;
  retryAt?: string;
  counter?: { name: string; scope: string; max: number; windowSeconds: number };
}

export function ruleLabel(rule: RuleRef | undefined): string | null {
  return rule ? `${rule.file}#${rule.pointer}` : null;
}

/**
 * A refused call as the agent sees it: a tool result with isError, whose text a model can act on
 * (what was refused, why, by which rule, when to retry) and whose `_meta` carries the same decision.
 */
export function refusal(server: string, tool: string, detail: RefusalDetail): CallToolResult {
  const parts = [`Countersign refused the call to tool "${tool}" on server "${server}": ${detail.message}`];
  if (detail.retryAt !== undefined && detail.retryAfterSeconds !== undefined) {
    parts.push(`Retry after ${detail.retryAt} (in ${detail.retryAfterSeconds} s).`);
  }
  const label = ruleLabel(detail.rule);
  if (label) parts.push(`Rule: ${label}.`);
  return {
    content: [{ type: 'text', text: parts.join(' ') }],
    isError: true,
    _meta: {
      [DECISION_META_KEY]: {
        decision: 'deny',
        reason: detail.reason,
        message: detail.message,
        rule: label,
        ...(detail.retryAfterSeconds !== undefined
          ? { retryAfterSeconds: detail.retryAfterSeconds, retryAt: detail.retryAt }
          : {}),
        ...(detail.counter ? { counter: detail.counter } : {}),
      },
    },
  };
}

/** Hidden and non-existent tools get the same answer, so a client cannot tell them apart. */
export function unknownTool(name: string): McpError {
  return new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);
}
