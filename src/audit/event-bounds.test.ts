import { describe, expect, it } from 'vitest';
import { MAX_AUDIT_ARGUMENTS_BYTES } from './args.js';
import type { AuditEvent } from './event.js';
import {
  MAX_EVENT_BYTES,
  MAX_EVENT_NAME_CHARS,
  MAX_EVENT_TEXT_CHARS,
  boundedEvent,
  cutText,
} from './event-bounds.js';

function event(fields: Partial<AuditEvent> = {}): AuditEvent {
  return {
    id: '01JAAAAAAAAAAAAAAAAAAAAAAA',
    time: '2026-01-01T00:00:00.000Z',
    type: 'decision',
    callId: '01JAAAAAAAAAAAAAAAAAAAAAAB',
    grant: 'g',
    owner: 'o',
    session: null,
    server: 's',
    tool: 't',
    argsSha256: 'a'.repeat(64),
    argsRedacted: { id: '[redacted]' },
    decision: 'deny',
    reason: 'default_deny',
    rule: null,
    message: 'no',
    counters: [],
    ...fields,
  };
}

describe('boundedEvent', () => {
  it('returns an event within the bounds unchanged', () => {
    const small = event();
    expect(boundedEvent(small)).toBe(small);
  });

  it('cuts a hostile tool name, message, error and reviewer, saying how long they were', () => {
    const huge = 'x'.repeat(200_000);
    const bounded = boundedEvent(
      event({ tool: huge, message: `Unknown tool: ${huge}`, error: huge, reviewer: huge }),
    );
    expect(bounded.tool).toHaveLength(MAX_EVENT_NAME_CHARS);
    expect(bounded.tool).toContain('…(200000 chars)');
    expect(bounded.reviewer?.length).toBeLessThanOrEqual(MAX_EVENT_NAME_CHARS);
    expect(bounded.message?.length).toBeLessThanOrEqual(MAX_EVENT_TEXT_CHARS);
    expect(bounded.error?.length).toBeLessThanOrEqual(MAX_EVENT_TEXT_CHARS);
    expect(Buffer.byteLength(JSON.stringify(bounded))).toBeLessThan(MAX_EVENT_BYTES);
  });

  it('truncates arguments that reached it unbounded, kept or redacted', () => {
    const items = Array.from({ length: 50_000 }, () => '[redacted]');
    const redacted = boundedEvent(event({ argsRedacted: { items } }));
    expect(redacted.argsRedacted).toMatchObject({ truncated: true, bytes: JSON.stringify({ items }).length });
    const kept = boundedEvent(event({ argsRedacted: undefined, args: { s: 'x'.repeat(100_000) } }));
    expect(kept.args).toMatchObject({ truncated: true, bytes: 100_008 });
    for (const part of [redacted.argsRedacted, kept.args])
      expect(Buffer.byteLength(JSON.stringify(part))).toBeLessThanOrEqual(MAX_AUDIT_ARGUMENTS_BYTES);
  });
});

describe('cutText', () => {
  it('never ends in half a surrogate pair', () => {
    const text = `${'x'.repeat(MAX_EVENT_NAME_CHARS - 17)}${'😀'.repeat(100)}`;
    expect(cutText(text, MAX_EVENT_NAME_CHARS)).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
    expect(cutText('short', 10)).toBe('short');
  });
});
