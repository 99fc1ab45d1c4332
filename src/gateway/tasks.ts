/**
 * MCP tasks as the agent sees them (spec 2025-11-25, experimental): a task-augmented `tools/call` answers at
 * once with a task, and `tasks/get`, `tasks/result`, `tasks/list` and `tasks/cancel` report on it, from any
 * session of the same grant, in any gateway process, after any restart (the state is in Redis).
 *
 * An approval task's status is read from its approval: pending → working (the message names the approval
 * and where reviewers were asked); approved → working until the background runner has run it once →
 * completed, or failed when the tool reported an error or the run was interrupted; rejected, expired or
 * cancelled → failed with the reason. A task the agent cancels stays cancelled.
 */
import {
  CallToolResultSchema,
  CancelTaskResultSchema,
  ErrorCode,
  GetTaskResultSchema,
  ListTasksResultSchema,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import type {
  CallToolResult,
  CancelTaskResult,
  CreateTaskResult,
  GetTaskResult,
  ListTasksResult,
  Task,
} from '@modelcontextprotocol/sdk/types.js';
import type { ApprovalRecord } from '../approvals/record.js';
import { formatDuration } from '../approvals/record.js';
import type { RuleRef } from '../policy/types.js';
import { TaskStoreUnavailableError } from '../tasks/store.js';
import type { TaskCursor, TaskRecord, TaskStatus } from '../tasks/store.js';
import type { UpstreamConnection } from '../upstream/connection.js';
import { refusal } from './answers.js';
import type { RefusalDetail } from './answers.js';
import type { CallerIdentity, GatewayServices } from './services.js';
import { awaitUpstreamTask } from './upstream-tasks.js';

export const RELATED_TASK_META_KEY = 'io.modelcontextprotocol/related-task';
const IMMEDIATE_RESPONSE_META_KEY = 'io.modelcontextprotocol/model-immediate-response';
const LIST_PAGE = 50;
/** An approval task lives at least this long past the approval's expiry, so its outcome can be fetched. */
const AFTER_EXPIRY_MS = 10 * 60_000;

/** The upstream connections of the asking session, by server name. */
export type SessionUpstreams = (server: string) => UpstreamConnection | undefined;

export interface TaskView {
  task: Task;
  terminal: boolean;
  /** The call's result once terminal: what the call itself would have returned. */
  result?: CallToolResult;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function ruleFromLabel(label: string): RuleRef | undefined {
  const at = label.lastIndexOf('#');
  return at > 0 ? { file: label.slice(0, at), pointer: label.slice(at + 1) } : undefined;
}

/** Why nobody's approval let the call run, in the words the agent is told ("Rejected by X: reason"). */
export function refusedDetail(record: ApprovalRecord, rule: RuleRef | undefined): RefusalDetail {
  const name = record.decidedByName || record.decidedBy || 'a reviewer';
  const base = rule ? { rule } : {};
  switch (record.status) {
    case 'rejected':
      return {
        reason: 'rejected',
        message: record.decisionReason
          ? `Rejected by ${name}: ${record.decisionReason}`
          : `Rejected by ${name}.`,
        ...base,
      };
    case 'expired':
      return {
        reason: 'expired',
        message: `No decision within ${formatDuration(record.timeoutSeconds)}; not executed.`,
        ...base,
      };
    default:
      return {
        reason: 'cancelled',
        message: `Approval cancelled${record.decisionReason ? ` (${record.decisionReason})` : ''}; not executed.`,
        ...base,
      };
  }
}

function parseResult(text: string | undefined): CallToolResult | undefined {
  if (!text) return undefined;
  try {
    const parsed = CallToolResultSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Pure: what an approval task reports, given its record and its approval's. */
export function approvalTaskView(
  task: TaskRecord,
  approval: ApprovalRecord | undefined,
  slackOn: boolean,
): TaskView {
  const shape = (status: TaskStatus, statusMessage: string, updated: number): Task => ({
    taskId: task.id,
    status,
    statusMessage,
    createdAt: iso(task.createdAt),
    lastUpdatedAt: iso(Math.max(updated, task.createdAt)),
    ttl: task.ttl,
    pollInterval: task.pollInterval,
  });
  const server = approval?.server ?? task.server ?? '';
  const tool = approval?.tool ?? '';
  if (task.cancelledAt !== undefined) {
    const message = task.cancelMessage ?? 'Cancelled by the agent.';
    return {
      task: shape('cancelled', message, task.cancelledAt),
      terminal: true,
      result: refusal(server, tool, { reason: 'cancelled', message }),
    };
  }
  if (!approval) {
    const message = `approval ${task.approvalId ?? ''} no longer exists; call again to ask for a new one.`;
    return {
      task: shape('failed', message, task.lastUpdatedAt),
      terminal: true,
      result: refusal(server, tool, { reason: 'approval_gone', message }),
    };
  }
  const by = approval.decidedByName || approval.decidedBy || 'a reviewer';
  switch (approval.status) {
    case 'pending': {
      const where =
        approval.channel && slackOn
          ? `reviewers asked in Slack channel ${approval.channel}`
          : 'reviewers asked through the approvals API (`countersign approvals`)';
      const votes = approval.quorum > 1 ? `, ${approval.votes} of ${approval.quorum} approvals so far` : '';
      return {
        task: shape(
          'working',
          `Waiting for a person to approve (approval ${approval.id}; ${where}${votes}); expires ${iso(approval.expiresAt)}.`,
          task.lastUpdatedAt,
        ),
        terminal: false,
      };
    }
    case 'approved':
      break;
    default: {
      const detail = refusedDetail(approval, ruleFromLabel(approval.rule));
      return {
        task: shape('failed', detail.message, approval.decidedAt ?? approval.expiresAt),
        terminal: true,
        result: refusal(server, tool, detail),
      };
    }
  }
  const decidedAt = approval.decidedAt ?? task.createdAt;
  if (approval.execution === 'none') {
    return {
      task: shape('working', `Approved by ${by} (approval ${approval.id}); waiting to run.`, decidedAt),
      terminal: false,
    };
  }
  if (approval.execution === 'running') {
    return {
      task: shape(
        'working',
        `Approved by ${by} (approval ${approval.id}); running upstream.`,
        approval.executionStartedAt ?? decidedAt,
      ),
      terminal: false,
    };
  }
  const ended = approval.executionEndedAt ?? decidedAt;
  if (approval.resultTask !== undefined && approval.resultTask !== task.id) {
    // Single use: the result went to the task that waited for this approval first.
    const message =
      `the approved call ran once (approval ${approval.id}) and its result was delivered to task ` +
      `${approval.resultTask}; it is not handed out twice. Call again to ask for a new approval.`;
    return {
      task: shape('failed', message, ended),
      terminal: true,
      result: refusal(server, tool, { reason: 'approval_used', message }),
    };
  }
  const result =
    parseResult(approval.taskResult) ??
    refusal(server, tool, {
      reason: 'result_unavailable',
      message: `the approved call ran (approval ${approval.id}) but its result was not kept.`,
    });
  if (approval.execution === 'interrupted') {
    return {
      task: shape(
        'failed',
        `Interrupted: the gateway process running the approved call stopped while it ran upstream; it was not run again (approval ${approval.id}).`,
        ended,
      ),
      terminal: true,
      result,
    };
  }
  const failed = result.isError === true;
  return {
    task: shape(
      failed ? 'failed' : 'completed',
      failed
        ? `Approved by ${by} and run; it returned an error (approval ${approval.id}).`
        : `Approved by ${by} and run (approval ${approval.id}).`,
      ended,
    ),
    terminal: true,
    result,
  };
}

function settledView(task: TaskRecord): TaskView {
  const status = task.cancelledAt !== undefined ? 'cancelled' : (task.status ?? 'failed');
  return {
    task: {
      taskId: task.id,
      status,
      ...(task.statusMessage ? { statusMessage: task.statusMessage } : {}),
      createdAt: iso(task.createdAt),
      lastUpdatedAt: iso(task.lastUpdatedAt),
      ttl: task.ttl,
      pollInterval: task.pollInterval,
    },
    terminal: true,
    result: parseResult(task.result) ?? {
      isError: true,
      content: [{ type: 'text', text: 'the task result could not be read' }],
    },
  };
}

function notFound(id: string): McpError {
  return new McpError(
    ErrorCode.InvalidParams,
    `Failed to retrieve task: Task not found (${id.slice(0, 80)})`,
  );
}

function unavailable(error: unknown): McpError {
  return new McpError(
    ErrorCode.InternalError,
    `the task store cannot be reached (Redis is unavailable): ${(error as Error).message}; try again shortly`,
  );
}

export class GatewayTasks {
  constructor(private readonly services: GatewayServices) {}

  private get options() {
    return this.services.config.raw.approvals;
  }

  private ttl(requested: number | undefined, minimum: number, maximum: number): number {
    const wanted = requested ?? this.options.task_ttl_ms;
    return Math.round(Math.min(Math.max(wanted, minimum), maximum));
  }

  /** A task waiting for `approval` (which the caller has attached the task to). */
  async forApproval(
    caller: CallerIdentity,
    approval: ApprovalRecord,
    requestedTtl: number | undefined,
  ): Promise<CreateTaskResult> {
    const timeoutMs = approval.expiresAt - this.services.now();
    const record = await this.services.tasks.create({
      kind: 'approval',
      grant: caller.grant.id,
      session: caller.sessionId,
      createdAt: this.services.now(),
      ttl: this.ttl(requestedTtl, timeoutMs + AFTER_EXPIRY_MS, timeoutMs + this.options.task_max_ttl_ms),
      pollInterval: this.options.task_poll_interval_ms,
      approvalId: approval.id,
      server: approval.server,
    });
    // The first task to wait for the approval owns its result; a later identical task call is told so.
    const owner = await this.services.approvals.store.ownResult(approval.id, record.id);
    const view = approvalTaskView(
      record,
      owner === undefined ? approval : { ...approval, resultTask: owner },
      this.services.approvals.slack !== undefined,
    );
    return {
      task: view.task,
      _meta: {
        [IMMEDIATE_RESPONSE_META_KEY]: `${view.task.statusMessage ?? ''} The call has not run; its result will be available from task ${record.id}.`,
        'countersign/approval': { id: approval.id, status: approval.status },
      },
    };
  }

  /** A task for a call answered at once (refused, or allowed and run): terminal from the start. */
  async settled(
    caller: CallerIdentity,
    server: string,
    result: CallToolResult,
    requestedTtl: number | undefined,
  ): Promise<CreateTaskResult> {
    const now = this.services.now();
    const failed = result.isError === true;
    const first = result.content.find((c) => c.type === 'text');
    const record = await this.services.tasks.create({
      kind: 'settled',
      grant: caller.grant.id,
      session: caller.sessionId,
      createdAt: now,
      ttl: this.ttl(requestedTtl, 60_000, this.options.task_max_ttl_ms),
      pollInterval: this.options.task_poll_interval_ms,
      server,
      status: failed ? 'failed' : 'completed',
      statusMessage: failed && first?.type === 'text' ? first.text.slice(0, 500) : 'Completed.',
      result: JSON.stringify(result),
    });
    return { task: settledView(record).task };
  }

  /** Wraps a task the upstream server created: the agent gets a gateway task id bound to its grant. */
  async fromUpstream(
    caller: CallerIdentity,
    server: string,
    created: CreateTaskResult,
  ): Promise<CreateTaskResult> {
    const upstream = created.task;
    const record = await this.services.tasks.create({
      kind: 'upstream',
      grant: caller.grant.id,
      session: caller.sessionId,
      createdAt: this.services.now(),
      ttl: upstream.ttl ?? this.options.task_max_ttl_ms,
      pollInterval: upstream.pollInterval ?? this.options.task_poll_interval_ms,
      server,
      upstreamTaskId: upstream.taskId,
      status: upstream.status,
      ...(upstream.statusMessage ? { statusMessage: upstream.statusMessage } : {}),
    });
    return { ...created, task: { ...upstream, taskId: record.id } };
  }

  private async find(caller: CallerIdentity, id: string): Promise<TaskRecord> {
    let task: TaskRecord | undefined;
    try {
      task = await this.services.tasks.get(id, caller.grant.id);
    } catch (error) {
      if (error instanceof TaskStoreUnavailableError) throw unavailable(error);
      throw error;
    }
    if (!task) throw notFound(id);
    return task;
  }

  private upstreamOf(
    caller: CallerIdentity,
    task: TaskRecord,
    upstreams: SessionUpstreams,
  ): UpstreamConnection {
    const connection = task.session === caller.sessionId ? upstreams(task.server ?? '') : undefined;
    if (!connection || !task.upstreamTaskId) {
      throw new McpError(
        ErrorCode.InvalidParams,
        `Task ${task.id} was created by upstream server "${task.server ?? ''}" in another MCP session; upstream tasks can only be reached from the session that created them`,
      );
    }
    return connection;
  }

  private async view(task: TaskRecord): Promise<TaskView> {
    if (task.kind === 'settled') return settledView(task);
    let approval: ApprovalRecord | undefined;
    try {
      approval = task.approvalId ? await this.services.approvals.store.get(task.approvalId) : undefined;
    } catch (error) {
      throw unavailable(error);
    }
    return approvalTaskView(task, approval, this.services.approvals.slack !== undefined);
  }

  async get(
    caller: CallerIdentity,
    id: string,
    upstreams: SessionUpstreams,
    signal: AbortSignal,
  ): Promise<GetTaskResult> {
    const task = await this.find(caller, id);
    if (task.kind === 'upstream') {
      const live = await this.upstreamOf(caller, task, upstreams).request(
        { method: 'tasks/get', params: { taskId: task.upstreamTaskId } },
        GetTaskResultSchema,
        { signal },
      );
      return { ...live, taskId: task.id };
    }
    return (await this.view(task)).task;
  }

  /** Blocks until the task is terminal, then returns what the call returned (spec: tasks/result). */
  async result(
    caller: CallerIdentity,
    id: string,
    upstreams: SessionUpstreams,
    signal: AbortSignal,
  ): Promise<CallToolResult> {
    const task = await this.find(caller, id);
    const related = { [RELATED_TASK_META_KEY]: { taskId: task.id } };
    if (task.kind === 'upstream') {
      const result = await awaitUpstreamTask(
        this.upstreamOf(caller, task, upstreams),
        task.upstreamTaskId ?? '',
        signal,
      );
      return { ...result, _meta: { ...result._meta, ...related } };
    }
    for (;;) {
      if (signal.aborted) throw new McpError(ErrorCode.InternalError, 'tasks/result was cancelled');
      let view: TaskView;
      try {
        view = await this.view(await this.find(caller, id));
      } catch (error) {
        // Redis briefly gone while waiting: keep waiting (the caller's signal ends the wait).
        if (!(error instanceof McpError) || error.code !== ErrorCode.InternalError) throw error;
        await this.nextChange(undefined, signal);
        continue;
      }
      if (view.terminal && view.result)
        return { ...view.result, _meta: { ...view.result._meta, ...related } };
      await this.nextChange(task.approvalId, signal);
      if (signal.aborted) throw new McpError(ErrorCode.InternalError, 'tasks/result was cancelled');
    }
  }

  /** Resolves on the approval's next change (pub/sub from any process), the next poll, or the abort. */
  private nextChange(approvalId: string | undefined, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        unsubscribe();
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, this.services.config.raw.approvals.poll_ms);
      const unsubscribe = approvalId ? this.services.approvals.events.on(approvalId, done) : () => undefined;
      signal.addEventListener('abort', done, { once: true });
    });
  }

  async list(
    caller: CallerIdentity,
    cursor: string | undefined,
    upstreams: SessionUpstreams,
    signal: AbortSignal,
  ): Promise<ListTasksResult> {
    let after: TaskCursor | undefined;
    if (cursor !== undefined) {
      const match = /^c([0-9]{1,16})_([0-9a-f-]{36})$/.exec(cursor);
      if (!match?.[1] || !match[2])
        throw new McpError(ErrorCode.InvalidParams, `Invalid cursor: ${cursor.slice(0, 80)}`);
      after = { at: Number(match[1]), id: match[2] };
    }
    let page: { tasks: TaskRecord[]; next?: TaskCursor };
    try {
      page = await this.services.tasks.list(caller.grant.id, after, LIST_PAGE);
    } catch (error) {
      throw unavailable(error);
    }
    const tasks: Task[] = [];
    for (const task of page.tasks) {
      if (task.kind === 'upstream') {
        tasks.push(await this.upstreamSnapshot(caller, task, upstreams, signal));
      } else {
        tasks.push((await this.view(task)).task);
      }
    }
    return ListTasksResultSchema.parse({
      tasks,
      ...(page.next ? { nextCursor: `c${page.next.at}_${page.next.id}` } : {}),
    });
  }

  /** An upstream task's live status when this session can reach it, else the last one seen. */
  private async upstreamSnapshot(
    caller: CallerIdentity,
    task: TaskRecord,
    upstreams: SessionUpstreams,
    signal: AbortSignal,
  ): Promise<Task> {
    try {
      return await this.get(caller, task.id, upstreams, signal);
    } catch {
      return {
        taskId: task.id,
        status: task.status ?? 'working',
        ...(task.statusMessage ? { statusMessage: task.statusMessage } : {}),
        createdAt: iso(task.createdAt),
        lastUpdatedAt: iso(task.lastUpdatedAt),
        ttl: task.ttl,
        pollInterval: task.pollInterval,
      };
    }
  }

  /**
   * Cancels a task. A pending approval is cancelled (nothing runs; the Slack message says so). Once a person
   * has approved, the call runs (or ran) anyway: the task is marked cancelled and says so.
   */
  async cancel(
    caller: CallerIdentity,
    id: string,
    upstreams: SessionUpstreams,
    signal: AbortSignal,
  ): Promise<CancelTaskResult> {
    const task = await this.find(caller, id);
    if (task.kind === 'upstream') {
      const cancelled = await this.upstreamOf(caller, task, upstreams).request(
        { method: 'tasks/cancel', params: { taskId: task.upstreamTaskId } },
        CancelTaskResultSchema,
        { signal },
      );
      return { ...cancelled, taskId: task.id };
    }
    let view = await this.view(task);
    if (view.terminal)
      throw new McpError(
        ErrorCode.InvalidParams,
        `Cannot cancel task in terminal status: ${view.task.status}`,
      );
    const { desk } = this.services.approvals;
    const approvalId = task.approvalId ?? '';
    let message = 'Cancelled by the agent before anyone decided; not executed.';
    try {
      const cancelled = await desk.cancel(
        approvalId,
        `agent (grant ${caller.grant.id})`,
        'cancelled by the agent (tasks/cancel)',
      );
      if (!cancelled) {
        view = await this.view(task);
        if (view.terminal)
          throw new McpError(
            ErrorCode.InvalidParams,
            `Cannot cancel task in terminal status: ${view.task.status}`,
          );
        message = `Cancelled by the agent after approval ${approvalId} was approved: the approved call runs (or ran) anyway; its result is not kept for this task.`;
      }
      await this.services.tasks.update(
        task.id,
        { cancelledAt: this.services.now(), cancelMessage: message },
        this.services.now(),
      );
    } catch (error) {
      if (error instanceof McpError) throw error;
      throw unavailable(error);
    }
    return CancelTaskResultSchema.parse((await this.view(await this.find(caller, id))).task);
  }
}
