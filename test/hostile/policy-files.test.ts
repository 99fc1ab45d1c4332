/**
 * Hostile policy files through the real `countersign policy` command: prototype names as tool names
 * and keys, and JSON nested far deeper than the loader allows. Valid documents load and decide by
 * name alone (never through Object.prototype); invalid ones get a clear error naming the file and
 * JSON path, exit code 1, and no stack trace.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import type { CliResult } from '../support/cli.js';

const STACK_FRAME = /^\s+at .+(:\d+:\d+\)?|\(native\))$/m;

const FILES: Record<string, string> = {
  'proto-names.json': JSON.stringify({
    version: '1',
    default: 'deny',
    hide: ['__proto__'],
    tools: { constructor: {}, prototype: { action: 'deny', reason: 'no prototypes' }, toString: {} },
  }),
  // JSON.stringify would drop an own "__proto__" key, so these are written as text.
  'proto-rule.json':
    '{"version":"1","default":"deny","tools":{"__proto__":{"action":"explode"},"constructor":{"deny_if":"x"}}}',
  'proto-document-key.json': '{"version":"1","default":"deny","__proto__":{"default":"allow"}}',
  'proto-rule-key.json':
    '{"version":"1","default":"deny","tools":{"x":{"__proto__":{"action":"allow"},"action":"deny"}}}',
  'proto-condition-key.json':
    '{"version":"1","default":"deny","tools":{"x":{"deny_if":[{"path":"args.a","op":"exists","__proto__":{"op":"eq"}}]}}}',
  'deep-10k.json': `{"version":"1","default":"deny","tools":{"x":{"deny_if":[{"path":"args.a","op":"eq","value":${'['.repeat(10_000)}${']'.repeat(10_000)}}]}}}`,
  'deep-objects-10k.json': `{"version":"1","default":"deny","description":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`,
  'deep-500k.json': `${'['.repeat(500_000)}${']'.repeat(500_000)}`,
  'deep-65.json': `{"version":"1","default":"deny","description":${'['.repeat(65)}${']'.repeat(65)}}`,
};

function expectNoStack(result: CliResult): void {
  expect(result.stderr).not.toMatch(STACK_FRAME);
  expect(result.stdout).not.toMatch(STACK_FRAME);
  expect(`${result.stdout}${result.stderr}`).not.toMatch(
    /RangeError|Maximum call stack|TypeError|SyntaxError: /,
  );
}

describe('countersign policy on hostile policy files', () => {
  let dir: string;
  const file = (name: string): string => path.join(dir, name);

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'countersign-hostile-policy-'));
    for (const [name, text] of Object.entries(FILES)) await writeFile(file(name), text);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts __proto__, constructor and prototype as tool names, and decides by name alone', async () => {
    const explain = (tool: string, args = '{}'): Promise<CliResult> =>
      runCli(['policy', 'explain', '-p', file('proto-names.json'), '-t', tool, '-a', args]);
    const hidden = await explain('__proto__');
    expect(hidden.code, hidden.stdout + hidden.stderr).toBe(3);
    const allowed = await explain('constructor', '{"__proto__":{"x":1},"constructor":{"prototype":{}}}');
    expect(allowed.code, allowed.stdout + allowed.stderr).toBe(0);
    const denied = await explain('prototype');
    expect(denied.code, denied.stdout + denied.stderr).toBe(3);
    expect(denied.stdout).toContain('no prototypes');
    // Not listed, so default deny — even though every object inherits a hasOwnProperty.
    const inherited = await explain('hasOwnProperty');
    expect(inherited.code, inherited.stdout + inherited.stderr).toBe(3);
    expect(inherited.stdout).toContain('default_deny');
    for (const result of [hidden, allowed, denied, inherited]) expectNoStack(result);
  });

  const invalid: [string, RegExp[]][] = [
    ['proto-rule.json', [/\/tools\/__proto__\/action: .*"explode"/, /\/tools\/constructor\/deny_if: /]],
    ['proto-document-key.json', [/\/__proto__: unknown key "__proto__"/]],
    ['proto-rule-key.json', [/\/tools\/x\/__proto__: unknown key "__proto__"/]],
    ['proto-condition-key.json', [/\/tools\/x\/deny_if\/0\/__proto__: unknown key "__proto__"/]],
    ['deep-10k.json', [/nested deeper than 64 levels/]],
    ['deep-objects-10k.json', [/nested deeper than 64 levels/]],
    ['deep-500k.json', [/nested deeper than 64 levels/]],
    ['deep-65.json', [/nested deeper than 64 levels/]],
  ];

  it('checks every hostile file in one run: each gets its own clear error, the valid one passes, exit code 1, no stack trace', async () => {
    const result = await runCli([
      'policy',
      'check',
      file('proto-names.json'),
      ...invalid.map(([name]) => file(name)),
    ]);
    const output = `${result.stdout}${result.stderr}`;
    expect(result.code, output).toBe(1);
    expect(result.stdout).toContain(`ok      ${file('proto-names.json')}`);
    for (const [name, messages] of invalid) {
      expect(result.stdout).toContain(`invalid ${file(name)}`);
      const lines = result.stdout.split('\n').filter((line) => line.trimStart().startsWith(`${file(name)}:`));
      expect(lines.length, `${name}: ${output}`).toBeGreaterThan(0);
      for (const message of messages) expect(lines.join('\n'), name).toMatch(message);
    }
    expectNoStack(result);
  });

  for (const name of ['proto-rule.json', 'deep-500k.json']) {
    it(`exits 1 on ${name} alone`, async () => {
      const result = await runCli(['policy', 'check', file(name)]);
      expect(result.code, `${result.stdout}${result.stderr}`).toBe(1);
      expectNoStack(result);
    });
  }

  it('explains a call whose --args are nested 10,000 levels deep without a stack trace', async () => {
    const deepArgs = `{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const result = await runCli([
      'policy',
      'explain',
      '-p',
      file('proto-names.json'),
      '-t',
      'constructor',
      '-a',
      deepArgs,
    ]);
    expect(result.code, `${result.stdout}${result.stderr}`).toBe(0);
    expectNoStack(result);
  });
});
