import { describe, expect, it } from 'vitest';
import { canonicalEvent } from '../audit/chain.js';
import { auditEventSchema } from '../audit/event.js';
import {
  MAX_MESSAGE_CHARS,
  MAX_METHOD_CHARS,
  MAX_TOOL_CHARS,
  PROTOCOL_EVENT_MAX_BYTES,
  protocolRefusalEvent,
} from './protocol-refusal.js';
import type { CallerIdentity } from './services.js';

const caller: CallerIdentity = { grant: { id: 'agent', owner: 'owner' }, sessionId: 'session-1' };

describe('protocolRefusalEvent', () => {
  it('is a valid protocol audit event that keeps the method and no params', () => {
    const event = protocolRefusalEvent(Date.UTC(2026, 0, 1), {
      caller,
      server: 'rec',
      method: 'x/probe',
      reason: 'unknown_method',
      message: 'Method not found: x/probe',
    });
    expect(auditEventSchema.parse(event)).toEqual(event);
    expect(event).toMatchObject({
      type: 'protocol',
      decision: 'deny',
      reason: 'unknown_method',
      method: 'x/probe',
      grant: 'agent',
      owner: 'owner',
      session: 'session-1',
      server: 'rec',
      tool: '',
    });
    expect(event).not.toHaveProperty('args');
    expect(event).not.toHaveProperty('argsRedacted');
  });

  it('stays under its bound with 200 KB method, tool and message, control characters and lone surrogates', () => {
    for (const unit of ['M', '\u0000', '\ud800', '"']) {
      const huge = unit.repeat(200 * 1024);
      const event = protocolRefusalEvent(0, {
        caller,
        server: 'rec',
        method: huge,
        tool: huge,
        reason: 'notification_refused',
        message: huge,
      });
      expect(event.method?.length).toBeLessThanOrEqual(MAX_METHOD_CHARS);
      expect(event.tool.length).toBeLessThanOrEqual(MAX_TOOL_CHARS);
      expect(event.message?.length).toBeLessThanOrEqual(MAX_MESSAGE_CHARS);
      // What the trail stores: canonical JSON, which must encode (no lone surrogate) and stay small.
      expect(Buffer.byteLength(canonicalEvent(event))).toBeLessThan(PROTOCOL_EVENT_MAX_BYTES);
    }
  });
});
