import { decide } from '../policy/decide.js';
import { explainDecision } from '../policy/explain.js';
import { checkPolicyFiles, loadPolicyFile } from '../policy/load.js';
import { formatIssue } from '../policy/issues.js';
import { runPolicyTestFile } from '../policy/policy-test.js';

/** `countersign policy check`: 0 when every file is valid, 1 otherwise (every issue printed). */
export async function policyCheck(files: string[], out: (line: string) => void): Promise<number> {
  const results = await checkPolicyFiles(files);
  for (const result of results) {
    if (result.ok) out(`ok      ${result.file}`);
    else {
      out(`invalid ${result.file}`);
      for (const issue of result.issues) out(`  ${formatIssue(issue)}`);
    }
  }
  return results.every((r) => r.ok) ? 0 : 1;
}

/** `countersign policy explain`: the decision the gateway would make, from the same decide(). */
export async function policyExplain(
  options: { policy: string; tool: string; args: string; grant: string; owner: string },
  out: (line: string) => void,
): Promise<number> {
  let args: unknown;
  try {
    args = JSON.parse(options.args);
  } catch (error) {
    out(`--args is not valid JSON: ${(error as Error).message}`);
    return 2;
  }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) {
    out('--args must be a JSON object, e.g. {"repositoryName":"prod-api"}');
    return 2;
  }
  const policy = await loadPolicyFile(options.policy);
  const decision = decide(
    policy,
    { tool: options.tool, args: args as Record<string, unknown> },
    {
      grant: { id: options.grant, owner: options.owner },
    },
  );
  out(explainDecision(decision));
  return decision.kind === 'allow' ? 0 : 3;
}

/** `countersign policy test`: runs policy test files; 0 when every case passes. */
export async function policyTest(files: string[], out: (line: string) => void): Promise<number> {
  let failed = 0;
  let passed = 0;
  for (const file of files) {
    const result = await runPolicyTestFile(file);
    if (result.error) {
      failed += 1;
      out(`error   ${file}\n  ${result.error.replace(/\n/g, '\n  ')}`);
      continue;
    }
    out(`${file} (policy ${result.policy})`);
    for (const r of result.results) {
      if (r.ok) passed += 1;
      else failed += 1;
      out(r.ok ? `  pass  ${r.name}` : `  FAIL  ${r.name}: ${r.detail ?? ''}`);
    }
  }
  out(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}
