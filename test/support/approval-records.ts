/** Inputs for unit tests of the approval store and what runs on it (real Redis, no gateway). */
import type { NewApproval } from '../../src/approvals/store.js';
import type { ApprovalSpec } from '../../src/policy/types.js';

/** An approval spec: one reviewer, quorum 1, 60 s, `wait: "return"`, unless `extra` says otherwise. */
export function approvalSpec(extra: Partial<ApprovalSpec> = {}): ApprovalSpec {
  return {
    reviewers: ['U1'],
    quorum: 1,
    timeoutSeconds: 60,
    allowSelfApproval: false,
    maxPending: 100,
    wait: 'return',
    holdForSeconds: 45,
    secretArgs: [],
    rule: { file: 'p.json', pointer: '/tools/t/action' },
    ...extra,
  };
}

/**
 * A maker of new approvals for one suite: each has its own id, call id and argument hash (numbered), and
 * the suite's tool, spec and arguments. `label` (capital letters) goes into every id, so ids are the suite's own.
 */
export function approvalMaker(options: {
  label: string;
  tool: string;
  spec: ApprovalSpec;
  now: number;
  args: (n: number) => Record<string, unknown>;
}): (extra?: Partial<NewApproval>) => NewApproval {
  let seq = 0;
  const numbered = (head: string, n: number): string => `${head}${String(n).padStart(26 - head.length, '0')}`;
  return (extra = {}) => {
    seq += 1;
    return {
      id: numbered(`01J${options.label}`, seq),
      server: 'aws',
      tool: options.tool,
      grant: 'bot',
      argsSha256: String(seq).padStart(64, '0'),
      owner: 'olga',
      session: 's1',
      callId: numbered(`01J${options.label}C`, seq),
      args: options.args(seq),
      rule: 'p.json#/tools/t/action',
      message: 'needs approval',
      spec: options.spec,
      now: options.now,
      ...extra,
    };
  };
}
