import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, isHidden } from './decide.js';
import { parsePolicy } from './load.js';

const toolName = fc.oneof(
  fc.constantFrom('echo', 'get-sum', 'DeleteBucket', 'Describe', '__proto__', 'constructor', 'toString', ''),
  fc.string({ maxLength: 12 }),
);
const glob = fc.oneof(toolName, fc.stringMatching(/^[A-Za-z*?-]{1,6}$/));
const jsonValue = fc.jsonValue({ maxDepth: 3 });
const condition = fc.record({
  path: fc.constantFrom('args.a', 'args.a.b', 'args.list.0', 'args.constructor', 'args.__proto__'),
  op: fc.constantFrom('eq', 'neq', 'contains'),
  value: jsonValue,
});
const rule = fc.record(
  {
    action: fc.constantFrom('allow', 'deny'),
    reason: fc.string({ maxLength: 10 }),
    require: fc.array(condition, { maxLength: 2 }),
    deny_if: fc.array(condition, { maxLength: 2 }),
    rate_limit: fc.record({
      max: fc.integer({ min: 1, max: 100 }),
      window: fc.constantFrom('second', 'minute', 5),
    }),
  },
  { requiredKeys: [] },
);
const document = fc.record({
  version: fc.constant('1'),
  default: fc.constantFrom('allow', 'deny'),
  hide: fc.array(glob, { maxLength: 3 }).map((h) => h.filter((entry) => entry !== '')),
  tools: fc.dictionary(
    glob.filter((name) => name !== ''),
    rule,
    { maxKeys: 5 },
  ),
});
const args = fc.oneof(
  fc.dictionary(fc.constantFrom('a', 'list', 'constructor', '__proto__', 'b'), jsonValue),
  fc.constant(JSON.parse('{"__proto__":{"a":1},"a":{"b":[1,2]}}') as Record<string, unknown>),
);

describe('decide (properties)', () => {
  it('never throws and never allows a hidden tool', () => {
    fc.assert(
      fc.property(document, toolName, args, (doc, tool, callArgs) => {
        const policy = parsePolicy(JSON.stringify(doc), 'prop.json');
        const decision = decide(policy, { tool, args: callArgs }, { grant: { id: 'g', owner: 'o' } });
        if (isHidden(policy, tool)) expect(decision).toMatchObject({ kind: 'deny', reason: 'hidden' });
        expect(decision.message.length).toBeGreaterThan(0);
      }),
      { numRuns: 500 },
    );
  });

  it('with no policy every call is denied', () => {
    fc.assert(
      fc.property(toolName, args, (tool, callArgs) => {
        expect(decide(undefined, { tool, args: callArgs }, { grant: { id: 'g', owner: 'o' } }).kind).toBe(
          'deny',
        );
      }),
    );
  });
});
