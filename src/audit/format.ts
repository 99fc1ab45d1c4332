import type { AuditEvent } from './event.js';

const COLUMNS = ['TIME', 'TYPE', 'DECISION', 'GRANT', 'SERVER/TOOL', 'REASON/OUTCOME', 'RULE'] as const;

/** Control characters (a client chooses tool names) must not reach the terminal. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

function row(event: AuditEvent): string[] {
  const why =
    event.type === 'result'
      ? `${event.outcome ?? '-'}${event.durationMs !== undefined ? ` ${event.durationMs}ms` : ''}${event.error ? `: ${event.error}` : ''}`
      : `${event.reason ?? '-'}${event.reviewer ? ` by ${event.reviewer}` : ''}${event.approvalId ? ` [${event.approvalId}]` : ''}`;
  return [
    event.time,
    event.type,
    event.decision,
    event.grant,
    event.server ? `${event.server}/${event.tool}` : event.tool,
    why,
    event.rule ?? '-',
  ].map(printable);
}

/**
 * Events for `countersign audit query`: one JSON object per line, or a table with a header and columns
 * padded to their widest cell.
 */
export function formatEvents(events: readonly AuditEvent[], json: boolean): string {
  if (json) return events.map((event) => JSON.stringify(event)).join('\n');
  if (events.length === 0) return 'no audit events match';
  const rows: string[][] = [[...COLUMNS], ...events.map(row)];
  const widths = COLUMNS.map((_, col) => Math.max(...rows.map((cells) => (cells[col] ?? '').length)));
  return rows
    .map((cells) =>
      cells
        .map((cell, col) => (col === cells.length - 1 ? cell : cell.padEnd(widths[col] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
