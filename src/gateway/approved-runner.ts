/**
 * Runs approved calls that MCP tasks wait for, with no agent request open: in whichever gateway process takes
 * the execution job, over this process's own connection to the upstream server (no client stands behind it,
 * so the upstream cannot ask for sampling, elicitation or roots during such a call).
 *
 * One claim (Lua, across all processes) wins the right to run it; the run is the same as for a held request
 * (approved-call.ts: the grant and the policy in force are checked again there), and its result is kept for
 * the task.
 */
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { Execution } from '../approvals/parking.js';
import { recordExecution } from '../approvals/parking.js';
import type { ApprovalRecord } from '../approvals/record.js';
import { callEventFields } from '../approvals/audit.js';
import { UpstreamConnection } from '../upstream/connection.js';
import { refusal } from './answers.js';
import { executeApproved } from './approved-call.js';
import { ToolCatalog } from './catalog.js';
import { upstreamTaskSupport } from './pipeline.js';
import type { EventBase } from './pipeline.js';
import type { GatewayServices } from './services.js';

const RUNNER_INFO = { name: 'countersign-runner', version: '0.1.0' };

/** What an interrupted call's retry or task is told. */
export function interruptedResult(record: ApprovalRecord): string {
  return JSON.stringify(
    refusal(record.server, record.tool, {
      reason: 'interrupted',
      message:
        `the approved call (approval ${record.id}) was interrupted: the gateway process running it stopped while ` +
        'the call was in progress upstream. It may or may not have taken effect, and it was not run again. ' +
        'Check its effect before calling again (a new call asks for a new approval).',
    }),
  );
}

export class ApprovedCallRunner {
  private readonly connections = new Map<string, Promise<UpstreamConnection>>();
  /** Connections once open, by server: the catalog reads them (a live map). */
  private readonly open = new Map<string, UpstreamConnection>();
  private readonly catalog = new ToolCatalog(this.open, false);
  /** Aborted at shutdown: calls still waiting for a rate window give their claim back. */
  private readonly stopping = new AbortController();
  /** Aborted when the grace period is over: calls still running upstream are cut off (and reported interrupted). */
  private readonly cutting = new AbortController();

  constructor(
    private readonly services: GatewayServices,
    private readonly processId: string,
  ) {}

  /** Runs the approved call once, if it is approved, unclaimed, and still allowed; otherwise does nothing. */
  async run(approvalId: string): Promise<void> {
    const { services } = this;
    const { store } = services.approvals;
    const record = await store.get(approvalId);
    if (!record || record.status !== 'approved' || record.execution !== 'none') return;
    const base = callEventFields(record, services.config.raw.audit.keep_arguments);
    if (!(await store.claim(record.id, this.processId, services.now()))) return;
    let execution = await this.execute(record, base);
    if (execution.outcome === 'superseded') return; // reported interrupted meanwhile: nothing ran
    if (execution.outcome === 'not_started') {
      // Stopping before it could start (waiting for its rate window): another process (or the next start) runs it.
      await store.unclaim(record.id, this.processId, services.now()).catch(() => false);
      return;
    }
    if (this.cutting.signal.aborted && execution.outcome === 'upstream_error') {
      // Cut off at shutdown while it ran upstream: it may have taken effect, and it is not run again.
      execution = {
        outcome: 'interrupted',
        result: JSON.parse(interruptedResult(record)) as Execution['result'],
      };
    }
    await recordExecution(
      { ...services.approvals, logger: services.logger, now: services.now },
      this.processId,
      record,
      execution,
      false,
    );
  }

  private execute(record: ApprovalRecord, base: EventBase): Promise<Execution> {
    return executeApproved({
      services: this.services,
      base,
      subject: { server: record.server, grant: record.grant, session: record.session },
      upstream: async () => {
        const connection = await this.connection(record.server);
        const tool = (await this.catalog.toolsOf(record.server)).find((t) => t.name === record.tool);
        return {
          connection,
          upstreamTask: tool !== undefined && upstreamTaskSupport(connection, tool) === 'required',
        };
      },
      params: { name: record.tool, arguments: record.args },
      waitSignal: this.stopping.signal,
      callSignal: this.cutting.signal,
      claimant: this.processId,
      record,
    });
  }

  /** This process's runner connection to `server`, opened on first use. */
  private connection(server: string): Promise<UpstreamConnection> {
    let pending = this.connections.get(server);
    if (!pending) {
      const entry = this.services.config.servers.find((s) => s.name === server);
      if (!entry) return Promise.reject(new McpError(ErrorCode.InvalidParams, `no server named ${server}`));
      const connection = new UpstreamConnection(
        entry,
        RUNNER_INFO,
        {},
        {
          notification: async () => undefined,
          request: async () => {
            throw new McpError(
              ErrorCode.MethodNotFound,
              'this call was approved and runs in the background: no client is attached to answer requests',
            );
          },
          reconnected: () => this.catalog.invalidate(server),
        },
        this.services.logger.child({ server, session: 'approved-runner' }),
      );
      pending = connection.connect().then(() => {
        this.open.set(server, connection);
        return connection;
      });
      pending.catch(() => this.connections.delete(server));
      this.connections.set(server, pending);
    }
    return pending;
  }

  /** Stops waiting for rate windows: those calls are given back unstarted, for another process or the next start. */
  stop(): void {
    this.stopping.abort();
  }

  /** The grace period is over: cuts off calls still running upstream (they are reported interrupted). */
  cutOff(): void {
    this.cutting.abort();
  }

  async close(): Promise<void> {
    this.stop();
    this.cutOff();
    const opened = await Promise.allSettled(this.connections.values());
    await Promise.all(opened.map((o) => (o.status === 'fulfilled' ? o.value.close() : Promise.resolve())));
  }
}
