import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { decide } from './decide.js';
import { loadPolicyFile } from './load.js';

/**
 * Policy tests: a file of example calls and the decisions a policy must make for them, run through the
 * same decide() the gateway uses (`countersign policy test`). Users keep them beside their policies.
 */
const caseSchema = z
  .object({
    name: z.string().min(1),
    tool: z.string().min(1),
    args: z.record(z.string(), z.unknown()).default({}),
    grant: z.string().default('test'),
    owner: z.string().default('test'),
    expect: z.enum(['allow', 'deny', 'require_approval']),
    /** For denials: the reason code that must be given (default_deny, deny_if, hidden, ...). */
    reason: z.string().optional(),
    /** The rule that must match, as a JSON pointer into the policy (e.g. /tools/echo/deny_if/0). */
    rule: z.string().optional(),
  })
  .strict();

export const policyTestFileSchema = z
  .object({
    $schema: z.string().optional(),
    /** The policy under test, relative to this file. */
    policy: z.string().min(1),
    cases: z.array(caseSchema).min(1),
  })
  .strict();

export interface PolicyCaseResult {
  name: string;
  ok: boolean;
  /** What went wrong, when not ok. */
  detail?: string;
}

export interface PolicyTestFileResult {
  file: string;
  policy: string;
  results: PolicyCaseResult[];
  /** Set when the file or its policy could not be read; no case ran. */
  error?: string;
}

export async function runPolicyTestFile(file: string): Promise<PolicyTestFileResult> {
  let parsed: z.infer<typeof policyTestFileSchema>;
  try {
    const json: unknown = JSON.parse(await readFile(file, 'utf8'));
    const checked = policyTestFileSchema.safeParse(json);
    if (!checked.success) return { file, policy: '', results: [], error: z.prettifyError(checked.error) };
    parsed = checked.data;
  } catch (error) {
    return { file, policy: '', results: [], error: `cannot read: ${(error as Error).message}` };
  }
  const policyFile = path.join(path.dirname(file), parsed.policy);
  let policy;
  try {
    policy = await loadPolicyFile(policyFile);
  } catch (error) {
    return { file, policy: policyFile, results: [], error: (error as Error).message };
  }
  const results = parsed.cases.map((testCase): PolicyCaseResult => {
    const decision = decide(
      policy,
      { tool: testCase.tool, args: testCase.args },
      {
        grant: { id: testCase.grant, owner: testCase.owner },
      },
    );
    const problems: string[] = [];
    if (decision.kind !== testCase.expect)
      problems.push(`expected ${testCase.expect}, got ${decision.kind}: ${decision.message}`);
    if (testCase.reason !== undefined) {
      const reason =
        decision.kind === 'deny'
          ? decision.reason
          : decision.kind === 'allow'
            ? 'allowed'
            : 'approval_required';
      if (reason !== testCase.reason) problems.push(`expected reason ${testCase.reason}, got ${reason}`);
    }
    if (testCase.rule !== undefined && decision.rule.pointer !== testCase.rule) {
      problems.push(`expected rule ${testCase.rule}, got ${decision.rule.pointer || '(none)'}`);
    }
    return problems.length
      ? { name: testCase.name, ok: false, detail: problems.join('; ') }
      : { name: testCase.name, ok: true };
  });
  return { file, policy: policyFile, results };
}
