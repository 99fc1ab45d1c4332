/**
 * The approval message, as Block Kit: pure functions of the approval record. What reviewers see must be
 * enough to decide (tool, server, agent, owner, arguments, the rule and its reason, who may decide, expiry)
 * without showing what the policy marks secret.
 */
import type { ApprovalRecord } from '../approvals/record.js';
import { formatDuration } from '../approvals/record.js';

export const APPROVE_ACTION = 'countersign_approve';
export const REJECT_ACTION = 'countersign_reject';
export const REJECT_MODAL = 'countersign_reject_reason';
export const REJECT_REASON_BLOCK = 'reason';
export const REJECT_REASON_INPUT = 'reason_input';

/** Section text may hold 3,000 characters; arguments get most of it. */
const MAX_ARGS_TEXT = 2600;
const MAX_VALUE_CHARS = 200;

export type Block = Record<string, unknown>;

export interface SlackMessage {
  text: string;
  blocks: Block[];
}

/** Arguments for reviewers: secret paths replaced, long strings cut, deep or wide values summarized. */
export function argumentsForReviewers(args: Record<string, unknown>, secretArgs: string[][]): unknown {
  const isSecret = (path: string[]): boolean =>
    secretArgs.some((secret) => secret.length === path.length && secret.every((s, i) => s === path[i]));
  const walk = (value: unknown, path: string[], depth: number): unknown => {
    if (path.length > 0 && isSecret(path)) return '[secret]';
    if (typeof value === 'string') {
      return value.length > MAX_VALUE_CHARS
        ? `${value.slice(0, MAX_VALUE_CHARS)}… (${value.length} chars)`
        : value;
    }
    if (value === null || typeof value !== 'object') return value;
    if (depth >= 6) return Array.isArray(value) ? `[array of ${value.length}]` : '{…}';
    if (Array.isArray(value)) {
      const shown = value.slice(0, 20).map((item, i) => walk(item, [...path, String(i)], depth + 1));
      return value.length > 20 ? [...shown, `… ${value.length - 20} more`] : shown;
    }
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      Object.defineProperty(out, key, {
        value: walk((value as Record<string, unknown>)[key], [...path, key], depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  };
  return walk(args, [], 0);
}

function escapeText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function argsBlockText(record: ApprovalRecord): string {
  let text = JSON.stringify(argumentsForReviewers(record.args, record.secretArgs), null, 2);
  if (text.length > MAX_ARGS_TEXT)
    text = `${text.slice(0, MAX_ARGS_TEXT)}\n… (cut; ${text.length} chars in all)`;
  // Triple backticks inside would end the code block early.
  return '```' + escapeText(text).replace(/```/g, '`\u200b``') + '```';
}

export function mentionReviewer(entry: string): string {
  if (/^S[A-Z0-9]+$/.test(entry)) return `<!subteam^${entry}>`;
  if (/^[UW][A-Z0-9]+$/.test(entry)) return `<@${entry}>`;
  return escapeText(entry);
}

function slackDate(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  return `<!date^${seconds}^{date_short_pretty} {time_secs}|${new Date(ms).toISOString()}>`;
}

function who(record: ApprovalRecord): string {
  if (record.decidedBy && /^[UW][A-Z0-9]+$/.test(record.decidedBy)) return `<@${record.decidedBy}>`;
  return escapeText(record.decidedByName || record.decidedBy || 'the gateway');
}

function summary(record: ApprovalRecord): string {
  return `Approval needed: ${record.tool} on ${record.server} by ${record.grant} (owner ${record.owner})`;
}

function facts(record: ApprovalRecord): Block[] {
  const quorum = record.quorum > 1 ? ` (${record.quorum} approvals needed)` : '';
  return [
    {
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: `*${escapeText(record.tool)}* on *${escapeText(record.server)}* needs approval`,
      },
      fields: [
        { type: 'mrkdwn', text: `*Agent (grant)*\n${escapeText(record.grant)}` },
        { type: 'mrkdwn', text: `*Owner*\n${escapeText(record.owner)}` },
        { type: 'mrkdwn', text: `*Reviewers*\n${record.reviewers.map(mentionReviewer).join(', ')}${quorum}` },
        {
          type: 'mrkdwn',
          text: `*Expires*\n${slackDate(record.expiresAt)} (${formatDuration(record.timeoutSeconds)})`,
        },
      ],
    },
    { type: 'section', text: { type: 'mrkdwn', text: `*Arguments*\n${argsBlockText(record)}` } },
    {
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: `${escapeText(record.message)}\nRule \`${escapeText(record.rule)}\` · approval \`${record.id}\``,
        },
      ],
    },
  ];
}

/** The message while pending: facts and the two buttons (value = approval id). */
export function pendingMessage(record: ApprovalRecord): SlackMessage {
  const votes =
    record.quorum > 1 && record.votes > 0
      ? [
          {
            type: 'context',
            elements: [{ type: 'mrkdwn', text: `${record.votes} of ${record.quorum} approvals so far` }],
          },
        ]
      : [];
  return {
    text: summary(record),
    blocks: [
      ...facts(record),
      ...votes,
      {
        type: 'actions',
        block_id: 'countersign_decision',
        elements: [
          {
            type: 'button',
            action_id: APPROVE_ACTION,
            style: 'primary',
            text: { type: 'plain_text', text: 'Approve' },
            value: record.id,
          },
          {
            type: 'button',
            action_id: REJECT_ACTION,
            style: 'danger',
            text: { type: 'plain_text', text: 'Reject' },
            value: record.id,
          },
        ],
      },
    ],
  };
}

/** One line naming the outcome: "Approved by <@U1> at …", "Expired: no decision within 15m; not executed". */
export function outcomeLine(record: ApprovalRecord): string {
  const at = record.decidedAt ? slackDate(record.decidedAt) : '';
  switch (record.status) {
    case 'approved':
      return `:white_check_mark: *Approved* by ${who(record)} at ${at}`;
    case 'rejected':
      return `:no_entry: *Rejected* by ${who(record)} at ${at}${record.decisionReason ? `: ${escapeText(record.decisionReason)}` : ''}`;
    case 'expired':
      return `:hourglass: *Expired*: no decision within ${formatDuration(record.timeoutSeconds)}; not executed`;
    case 'cancelled':
      return `:heavy_minus_sign: *Cancelled*${record.decisionReason ? `: ${escapeText(record.decisionReason)}` : ''}; not executed`;
    case 'pending':
      return 'Pending';
  }
}

/** The message once decided: facts, the outcome, no buttons. */
export function decidedMessage(record: ApprovalRecord): SlackMessage {
  const line = outcomeLine(record);
  return {
    text: `${summary(record)}: ${record.status}`,
    blocks: [...facts(record), { type: 'section', text: { type: 'mrkdwn', text: line } }],
  };
}

/** The thread reply after the approved call ran. */
export function executionReply(record: ApprovalRecord): string {
  switch (record.outcome) {
    case 'ok':
      return `Executed: ${record.tool} succeeded.`;
    case 'tool_error':
      return `Executed: ${record.tool} ran and returned an error.`;
    case 'interrupted':
      return `Interrupted: ${record.tool} was running when its server or gateway went away; it was not run again.`;
    default:
      return `Failed: ${record.tool} could not be completed upstream (${escapeText(record.outcome ?? 'unknown')}).`;
  }
}

/** The modal a Reject click opens; `private_metadata` carries the approval id. */
export function rejectModal(approvalId: string, tool: string): Block {
  return {
    type: 'modal',
    callback_id: REJECT_MODAL,
    private_metadata: approvalId,
    title: { type: 'plain_text', text: 'Reject call' },
    submit: { type: 'plain_text', text: 'Reject' },
    close: { type: 'plain_text', text: 'Cancel' },
    blocks: [
      {
        type: 'input',
        block_id: REJECT_REASON_BLOCK,
        optional: true,
        label: { type: 'plain_text', text: `Why reject ${tool.slice(0, 100)}? The agent will see this.` },
        element: {
          type: 'plain_text_input',
          action_id: REJECT_REASON_INPUT,
          multiline: true,
          max_length: 1000,
        },
      },
    ],
  };
}
