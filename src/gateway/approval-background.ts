/**
 * The background side of approvals in one gateway process: the worker that runs approved calls tasks wait for,
 * and the recovery sweep (liveness key, interrupted executions, lost jobs, overdue expiries).
 */
import { ExecutionRecovery } from '../approvals/recovery.js';
import { approvalAudit, callEventFields } from '../approvals/audit.js';
import { newUlid } from '../ids/ulid.js';
import { ApprovedCallRunner, interruptedResult } from './approved-runner.js';
import { writeAudit } from './audit-write.js';
import type { GatewayServices } from './services.js';

export interface ApprovalBackground {
  close(): Promise<void>;
}

export async function startApprovalBackground(services: GatewayServices): Promise<ApprovalBackground> {
  const { approvals, config, logger, metrics, now } = services;
  const runner = new ApprovedCallRunner(services, approvals.processId);
  const recovery = new ExecutionRecovery({
    store: approvals.store,
    processId: approvals.processId,
    livenessMs: config.raw.approvals.liveness_ms,
    logger,
    now,
    hooks: {
      interruptedResult,
      interrupted: async (record) => {
        metrics.approvals.inc({ server: record.server, step: 'interrupted' });
        await writeAudit(services, {
          ...callEventFields(record, config.raw.audit.keep_arguments),
          id: newUlid(),
          time: new Date(now()).toISOString(),
          type: 'result',
          decision: 'allow',
          reason: 'approved',
          rule: record.rule || null,
          message: 'interrupted: the gateway process running the approved call died; not run again',
          counters: [],
          outcome: 'interrupted',
        });
        await writeAudit(
          services,
          approvalAudit(record, now(), {
            decision: 'allow',
            reason: 'interrupted',
            message: `the process ${record.executor ?? ''} running the approved call stopped while it ran upstream; not run again`,
          }),
        );
        await approvals.jobs.executed(record);
      },
      runAwaiting: (id) => approvals.executions.enqueue(id),
      expireOverdue: async (id) => {
        await approvals.jobs.expireNow(id);
      },
    },
  });
  // The liveness key exists before this process claims anything.
  await recovery.start();
  approvals.executions.start((id) => runner.run(id));
  return {
    close: async () => {
      runner.stop();
      runner.cutOff();
      await approvals.executions.close();
      await runner.close();
      await recovery.close();
    },
  };
}
