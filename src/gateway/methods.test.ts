import { describe, expect, it } from 'vitest';
import {
  ClientNotificationSchema,
  ClientRequestSchema,
  ServerNotificationSchema,
  ServerRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { z } from 'zod';
import { ALLOWED_METHODS, allowedMethod, boundedText, isAllowedMethod } from './methods.js';
import type { MethodDirection } from './methods.js';

/** The method names a union of the SDK's message schemas accepts. */
function sdkMethods(union: z.ZodUnion<readonly z.ZodObject[]>): string[] {
  return union.options.map((option) => String((option.shape.method as z.ZodLiteral<string>).value));
}

const SDK: Record<MethodDirection, string[]> = {
  clientRequests: sdkMethods(ClientRequestSchema as unknown as z.ZodUnion<readonly z.ZodObject[]>),
  clientNotifications: sdkMethods(ClientNotificationSchema as unknown as z.ZodUnion<readonly z.ZodObject[]>),
  serverRequests: sdkMethods(ServerRequestSchema as unknown as z.ZodUnion<readonly z.ZodObject[]>),
  serverNotifications: sdkMethods(ServerNotificationSchema as unknown as z.ZodUnion<readonly z.ZodObject[]>),
};
const DIRECTIONS = Object.keys(ALLOWED_METHODS) as MethodDirection[];

describe('the method allow-list', () => {
  it.each(DIRECTIONS)('%s names only methods the MCP SDK defines for that direction', (direction) => {
    for (const method of Object.keys(ALLOWED_METHODS[direction])) expect(SDK[direction]).toContain(method);
  });

  it('leaves out client-side tasks and upstream task ids, which the gateway does not relay', () => {
    expect(isAllowedMethod('clientNotifications', 'notifications/tasks/status')).toBe(false);
    expect(isAllowedMethod('serverNotifications', 'notifications/tasks/status')).toBe(false);
    for (const method of ['tasks/get', 'tasks/result', 'tasks/list', 'tasks/cancel']) {
      expect(isAllowedMethod('serverRequests', method)).toBe(false);
      expect(allowedMethod('clientRequests', method)?.passage).toBe('answered');
    }
  });

  it('matches names exactly: case, whitespace and prototype names do not pass', () => {
    const spellings = [
      'Tools/Call',
      'tools/CALL',
      'TOOLS/LIST',
      'tools/call ',
      ' tools/call',
      'tools/call\u0000',
      'tools//call',
      'x/anything',
      '',
      '__proto__',
      'constructor',
      'toString',
      'hasOwnProperty',
      'valueOf',
    ];
    for (const direction of DIRECTIONS)
      for (const method of spellings)
        expect(isAllowedMethod(direction, method), `${direction} ${method}`).toBe(false);
    expect(isAllowedMethod('clientRequests', 'tools/call')).toBe(true);
  });

  it('never lets a notification run a tool: no request method is an allowed notification', () => {
    for (const method of [...SDK.clientRequests, ...SDK.serverRequests]) {
      expect(isAllowedMethod('clientNotifications', method), method).toBe(false);
      expect(isAllowedMethod('serverNotifications', method), method).toBe(false);
    }
  });

  it('says why each entry is safe', () => {
    for (const direction of DIRECTIONS)
      for (const entry of Object.values(ALLOWED_METHODS[direction]))
        expect(entry.why.length).toBeGreaterThan(10);
  });
});

describe('boundedText', () => {
  it('keeps short text and cuts long text to the bound, saying how long it was', () => {
    expect(boundedText('tools/call', 128)).toBe('tools/call');
    const cut = boundedText('x'.repeat(200_000), 128);
    expect(cut.length).toBe(128);
    expect(cut).toMatch(/^x+…\(200000 chars\)$/);
    expect(boundedText('abcdef', 3).length).toBeLessThanOrEqual(3);
  });
});
