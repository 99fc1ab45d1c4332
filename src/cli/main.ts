#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { createLogger } from '../log/logger.js';
import { approvalsDecide, approvalsList, approvalsShow } from './approvals.js';
import type { ApprovalsCliOptions } from './approvals.js';
import { auditQuery, auditVerify } from './audit.js';
import type { AuditQueryOptions } from './audit.js';
import { policyCheck, policyExplain, policyTest } from './policy.js';
import { DEFAULT_CONFIG } from './runtime.js';
import { serve } from './serve.js';
import { stdio } from './stdio.js';

const print = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

/** Runs a command; known errors print their message (no stack) and exit 1. */
function run(work: () => Promise<number | void>): () => Promise<void> {
  return async () => {
    try {
      const code = await work();
      if (typeof code === 'number') process.exitCode = code;
    } catch (error) {
      process.stderr.write(`countersign: ${(error as Error).message}\n`);
      process.exitCode = 1;
    }
  };
}

const { version } = JSON.parse(
  readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../package.json'), 'utf8'),
) as { version: string };

const program = new Command('countersign')
  .version(version)
  .description(
    'An MCP gateway with a human in the loop: policy, rate limits and a verifiable audit trail for every tool call.',
  )
  .showHelpAfterError();

program
  .command('serve')
  .description('run the gateway over Streamable HTTP (/mcp and /mcp/<server>)')
  .option('-c, --config <file>', 'gateway config (JSON)', DEFAULT_CONFIG)
  .action((opts: { config: string }) => run(() => serve(opts.config, createLogger()))());

program
  .command('stdio')
  .description('serve one MCP client over stdin/stdout, as one grant')
  .option('-c, --config <file>', 'gateway config (JSON)', DEFAULT_CONFIG)
  .option('-g, --grant <id>', 'the grant this client acts as (required when the config defines grants)')
  .action((opts: { config: string; grant?: string }) =>
    run(() => stdio(opts.config, opts.grant, createLogger()))(),
  );

const policy = program.command('policy').description('check and explain policy documents');
policy
  .command('check')
  .description('validate policy files; prints every problem with its file and JSON path')
  .argument('<files...>')
  .action((files: string[]) => run(() => policyCheck(files, print))());
policy
  .command('test')
  .description('run policy test files (example calls and the decisions they must get)')
  .argument('<files...>')
  .action((files: string[]) => run(() => policyTest(files, print))());
policy
  .command('explain')
  .description('show the decision for one call, from the same decide() the gateway runs')
  .requiredOption('-p, --policy <file>', 'policy file')
  .requiredOption('-t, --tool <name>', 'tool name (as the upstream server names it)')
  .option('-a, --args <json>', 'the call arguments as a JSON object', '{}')
  .option('-g, --grant <id>', 'grant id', 'explain')
  .option('-o, --owner <owner>', 'grant owner', 'explain')
  .action((opts: { policy: string; tool: string; args: string; grant: string; owner: string }) =>
    run(() => policyExplain(opts, print))(),
  );

const audit = program.command('audit').description('query and verify the audit trail');
audit
  .command('query')
  .description('list audit events, oldest first')
  .option('-c, --config <file>', 'gateway config (JSON)', DEFAULT_CONFIG)
  .option('--since <when>', 'ISO time or duration back from now (15m, 2h, 7d)')
  .option('--grant <id>', 'only this grant')
  .option('--tool <name>', 'only this tool')
  .option('--decision <allow|deny|pending>', 'only this decision')
  .option('--type <type>', 'only this event type: decision, result, approval, auth or policy')
  .option('--limit <n>', 'at most n events')
  .option('--json', 'one JSON event per line')
  .action((opts: { config: string } & AuditQueryOptions) =>
    run(() => auditQuery(opts.config, opts, createLogger('warn'), print))(),
  );
audit
  .command('verify')
  .description('check the hash chain; exits 1 naming the first altered, removed or reordered event')
  .option('-c, --config <file>', 'gateway config (JSON)', DEFAULT_CONFIG)
  .action((opts: { config: string }) => run(() => auditVerify(opts.config, createLogger('warn'), print))());

const approvals = program
  .command('approvals')
  .description(
    "list, show, approve and reject parked calls through the gateway's approvals API (no Slack needed)",
  );
const apiOptions = (command: Command): Command =>
  command
    .option('-c, --config <file>', 'gateway config (JSON): where it listens, its data_dir', DEFAULT_CONFIG)
    .option('--url <url>', "gateway base URL (default: from the config's listen address)")
    .option('--token <token>', 'admin token (default: $COUNTERSIGN_ADMIN_TOKEN, else <data_dir>/admin-token)')
    .option('--json', 'JSON output');
apiOptions(approvals.command('list').description('approvals, newest first'))
  .option('--status <status>', 'pending, approved, rejected, expired or cancelled')
  .option('--limit <n>', 'at most n approvals (default 50)')
  .action((opts: ApprovalsCliOptions & { status?: string; limit?: string }) =>
    run(() => approvalsList(opts, print))(),
  );
apiOptions(approvals.command('show').description('one approval, whole').argument('<id>')).action(
  (id: string, opts: ApprovalsCliOptions) => run(() => approvalsShow(id, opts, print))(),
);
for (const verdict of ['approve', 'reject'] as const) {
  apiOptions(
    approvals
      .command(verdict)
      .description(`${verdict} a parked call, as a reviewer the policy allows`)
      .argument('<id>'),
  )
    .requiredOption(
      '-r, --reviewer <id>',
      'who decides: a Slack user id or local reviewer name listed in the policy',
    )
    .option('--reason <text>', verdict === 'reject' ? 'why (the agent sees it)' : 'note')
    .action((id: string, opts: ApprovalsCliOptions & { reviewer: string; reason?: string }) =>
      run(() => approvalsDecide(verdict, id, opts, print))(),
    );
}

await program.parseAsync(process.argv);
