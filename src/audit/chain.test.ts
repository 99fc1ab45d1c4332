import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GENESIS, canonicalEvent, eventHash, wellFormed } from './chain.js';
import type { AuditEvent } from './event.js';
import { formatEvents } from './format.js';

const event: AuditEvent = {
  id: '01JZ0000000000000000000001',
  time: '2026-11-23T12:00:00.000Z',
  type: 'decision',
  callId: '01JZ0000000000000000000002',
  grant: 'ci-bot',
  owner: 'alice',
  session: null,
  server: 'redshift',
  tool: 'CloneContainerToECR',
  argsSha256: 'a'.repeat(64),
  argsRedacted: { repo: '[redacted]' },
  decision: 'deny',
  reason: 'rate_limited',
  rule: 'policies/redshift.json#/tools/CloneContainerToECR/limits/0',
  message: 'rate limit reached',
  counters: [{ counter: 'clone_rate', scope: 'grant', key: 'cs:limit:x', count: 10, max: 10 }],
};

describe('eventHash', () => {
  it('is SHA-256 of prev, a newline and the canonical event', () => {
    const expected = createHash('sha256')
      .update(`${GENESIS}\n${canonicalEvent(event)}`)
      .digest('hex');
    expect(GENESIS).toBe('0'.repeat(64));
    expect(eventHash(GENESIS, event)).toBe(expected);
  });

  it('changes with the previous hash and with any field', () => {
    const base = eventHash(GENESIS, event);
    expect(eventHash('1'.repeat(64), event)).not.toBe(base);
    expect(eventHash(GENESIS, { ...event, decision: 'allow' })).not.toBe(base);
    expect(eventHash(GENESIS, { ...event, counters: [] })).not.toBe(base);
  });

  it('does not depend on property order', () => {
    const reversed = Object.fromEntries(Object.entries(event).reverse()) as AuditEvent;
    expect(eventHash(GENESIS, reversed)).toBe(eventHash(GENESIS, event));
  });

  it('wellFormed replaces lone surrogates so an event stays writable', () => {
    expect(() => canonicalEvent({ ...event, tool: 'x\ud800' })).toThrow();
    expect(canonicalEvent(wellFormed({ ...event, tool: 'x\ud800' }))).toContain('"tool":"x\ufffd"');
  });
});

describe('formatEvents', () => {
  const result: AuditEvent = {
    ...event,
    type: 'result',
    decision: 'allow',
    reason: 'allowed',
    outcome: 'tool_error',
    durationMs: 12,
  };

  it('prints an aligned table with reason or outcome', () => {
    const lines = formatEvents([event, result], false).split('\n');
    expect(lines[0]).toMatch(/^TIME\s+TYPE\s+DECISION\s+GRANT\s+SERVER\/TOOL\s+REASON\/OUTCOME\s+RULE$/);
    expect(lines[1]).toContain('redshift/CloneContainerToECR');
    expect(lines[1]).toContain('rate_limited');
    expect(lines[2]).toContain('tool_error 12ms');
    expect(lines[1]?.indexOf('ci-bot')).toBe(lines[0]?.indexOf('GRANT'));
  });

  it('prints JSON lines, and never control characters in the table', () => {
    const json = formatEvents([event, result], true).split('\n');
    expect(json.map((line) => JSON.parse(line) as AuditEvent)).toEqual([event, result]);
    expect(formatEvents([{ ...event, tool: 'evil\u001b[2Jtool' }], false)).not.toContain('\u001b');
    expect(formatEvents([], false)).toBe('no audit events match');
  });
});
