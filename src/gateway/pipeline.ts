import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  CallToolResultSchema,
  CreateTaskResultSchema,
  ErrorCode,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import type {
  CallToolRequest,
  CallToolResult,
  CreateTaskResult,
  Progress,
  Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { newUlid } from '../ids/ulid.js';
import { auditedArguments, hashArguments } from '../audit/args.js';
import type { AuditEvent, AuditOutcome } from '../audit/event.js';
import { LimitStoreUnavailableError } from '../limits/counters.js';
import type { CounterUse, Reservation } from '../limits/counters.js';
import { decide, findRule, isHidden } from '../policy/decide.js';
import type { RuleRef } from '../policy/types.js';
import { UpstreamInterruptedError, UpstreamUnavailableError } from '../upstream/connection.js';
import type { UpstreamConnection } from '../upstream/connection.js';
import { refusal, ruleLabel, unknownTool } from './answers.js';
import { handleApprovalCall, rateLimited } from './approval-path.js';
import { writeAudit } from './audit-write.js';
import { MAX_PARAMS_DEPTH, nestedDeeperThan } from './json-depth.js';
import type { RefusalDetail } from './answers.js';
import type { ToolCatalog } from './catalog.js';
import type { CallerIdentity, GatewayServices } from './services.js';
import { GatewayTasks } from './tasks.js';
import { awaitUpstreamTask } from './upstream-tasks.js';

/** What the pipeline needs from the downstream request being handled. */
export interface DownstreamCall {
  params: CallToolRequest['params'];
  signal: AbortSignal;
  /** Aborted when the downstream session ends (an approved call may still run while the session lives). */
  sessionSignal?: AbortSignal;
  /** Relays an upstream progress notification to the client under the client's own token. */
  sendProgress?: (progress: Progress) => Promise<void>;
  /** The upstream tool only runs as a task: call it as one and wait for its result (approved calls). */
  upstreamTask?: boolean;
}

/** How a tool takes task-augmented calls through the gateway (spec: `execution.taskSupport`). */
export type TaskSupport = 'forbidden' | 'optional' | 'required';

/** Whether the upstream server itself runs this tool as a task (capability and tool both say so). */
export function upstreamTaskSupport(connection: UpstreamConnection, tool: Tool): TaskSupport {
  if (!connection.capabilities.tasks?.requests?.tools?.call) return 'forbidden';
  const support = tool.execution?.taskSupport;
  return support === 'optional' || support === 'required' ? support : 'forbidden';
}

/**
 * What the gateway lists for a tool: a tool a person may have to approve takes tasks (`optional`, or what the
 * upstream declared when stricter); any other tool takes what its upstream takes.
 */
export function exposedTaskSupport(mayNeedApproval: boolean, upstream: TaskSupport): TaskSupport {
  if (mayNeedApproval) return upstream === 'required' ? 'required' : 'optional';
  return upstream;
}

export type EventBase = Omit<
  AuditEvent,
  'id' | 'time' | 'type' | 'decision' | 'reason' | 'rule' | 'message' | 'counters'
>;

/**
 * The one path every tool call walks:
 *   route (tool must exist upstream) → resolve policy → decide (pure) → limits (reserve)
 *   → audit the decision → forward upstream → release counters if it never got there → audit the result.
 * Refusals are tool results with isError; hidden and unknown tools are answered as unknown.
 */
export async function handleToolCall(
  services: GatewayServices,
  caller: CallerIdentity,
  catalog: ToolCatalog,
  connections: ReadonlyMap<string, UpstreamConnection>,
  call: DownstreamCall,
): Promise<CallToolResult | CreateTaskResult> {
  const started = performance.now();
  const { config, metrics } = services;
  const parsedName = catalog.parse(call.params.name);
  // Nesting is checked first, iteratively: hashing or serializing a hostile value would overflow the stack.
  const tooDeep = nestedDeeperThan(call.params, MAX_PARAMS_DEPTH);
  const args = tooDeep ? {} : (call.params.arguments ?? {});
  let argsSha256: string;
  let argsProblem: string | undefined = tooDeep
    ? `the call's arguments or _meta nest deeper than ${MAX_PARAMS_DEPTH} levels`
    : undefined;
  try {
    argsSha256 = hashArguments(args);
  } catch (error) {
    // Not canonicalizable (e.g. a lone UTF-16 surrogate): refused below, audited under a plain hash.
    argsSha256 = createHash('sha256').update(JSON.stringify(args)).digest('hex');
    argsProblem = (error as Error).message;
  }
  const base: EventBase = {
    callId: newUlid(),
    grant: caller.grant.id,
    owner: caller.grant.owner,
    session: caller.sessionId,
    server: parsedName?.server ?? '',
    tool: parsedName?.tool ?? call.params.name,
    argsSha256,
    ...auditedArguments(args, config.raw.audit.keep_arguments),
  };

  const refuse = async (detail: RefusalDetail, counters: CounterUse[] = []): Promise<CallToolResult> => {
    metrics.calls.inc({ server: base.server, decision: 'deny', reason: detail.reason });
    await writeAudit(services, decisionEvent(services.now(), base, 'deny', detail, counters));
    metrics.callDuration.observe(
      { server: base.server, outcome: 'refused' },
      (performance.now() - started) / 1000,
    );
    return refusal(base.server, base.tool, detail);
  };
  const refuseAsUnknown = async (reason: string): Promise<never> => {
    metrics.calls.inc({ server: base.server, decision: 'deny', reason });
    await writeAudit(
      services,
      decisionEvent(
        services.now(),
        base,
        'deny',
        { reason, message: `Unknown tool: ${call.params.name}` },
        [],
      ),
    );
    throw unknownTool(call.params.name);
  };

  if (argsProblem) {
    return refuse({
      reason: 'arguments_invalid',
      message: `the arguments cannot be processed: ${argsProblem}`,
    });
  }
  const argsBytes = Buffer.byteLength(JSON.stringify(args));
  if (argsBytes > config.raw.max_argument_bytes) {
    return refuse({
      reason: 'arguments_too_large',
      message: `the arguments are ${argsBytes} bytes of JSON; the gateway accepts at most ${config.raw.max_argument_bytes}.`,
    });
  }

  let routed;
  try {
    routed = await catalog.resolve(call.params.name);
  } catch (error) {
    return refuse({
      reason: 'upstream_unavailable',
      message: `could not list the server's tools: ${(error as Error).message}`,
    });
  }
  if (!routed) return refuseAsUnknown('unknown_tool');
  const connection = connections.get(routed.server);
  if (!connection) return refuseAsUnknown('unknown_tool');

  const policy = services.policies.resolve(routed.server, caller.grant.id);
  const upstreamTasks = upstreamTaskSupport(connection, routed.tool);
  if (call.params.task !== undefined && policy && !isHidden(policy, routed.tool.name)) {
    const support = exposedTaskSupport(
      findRule(policy, routed.tool.name)?.approval !== undefined,
      upstreamTasks,
    );
    if (support === 'forbidden') {
      // Spec: a tool listed without task support answers a task-augmented call with -32601.
      throw new McpError(
        ErrorCode.MethodNotFound,
        `Tool ${call.params.name} does not support task-augmented calls (its execution.taskSupport is "forbidden"); call it without "task"`,
      );
    }
  }
  const decision = decide(policy, { tool: routed.tool.name, args }, { grant: caller.grant });
  if (decision.kind === 'deny') {
    if (decision.reason === 'hidden') return refuseAsUnknown('hidden');
    return refuse({ reason: decision.reason, message: decision.message, rule: decision.rule });
  }
  if (decision.kind === 'require_approval') {
    metrics.calls.inc({ server: base.server, decision: 'approval', reason: 'approval_required' });
    return handleApprovalCall({
      services,
      caller,
      base,
      connection,
      upstreamTool: routed.tool.name,
      upstreamTaskSupport: upstreamTasks,
      args,
      decision,
      call,
      refuse,
    });
  }

  let reservation: Reservation;
  try {
    const reserved = await services.limits.reserve(
      decision.limits,
      { server: routed.server, grant: caller.grant.id, session: caller.sessionId },
      services.now(),
    );
    if (!reserved.ok) {
      return refuse(rateLimited(reserved), [reserved.counter]);
    }
    reservation = reserved;
  } catch (error) {
    if (!(error instanceof LimitStoreUnavailableError)) throw error;
    return refuse({
      reason: 'store_unavailable',
      message:
        'policy store unavailable (Redis cannot be reached), so no call is allowed; try again shortly.',
    });
  }

  // Audit before side effects: no call is forwarded unless its decision is in the trail.
  const allowed = await auditAllowed(services, base, decision.rule, decision.message, reservation, 'allowed');
  if (!allowed) return refuse(AUDIT_UNAVAILABLE);
  metrics.calls.inc({ server: base.server, decision: 'allow', reason: 'allowed' });
  // A task-augmented call goes to the upstream as a task only when the upstream runs that tool as one; the
  // gateway answers the others with a task that is already settled (see GatewayTasks.settled).
  const params =
    call.params.task !== undefined && upstreamTasks === 'forbidden' ? withoutTask(call.params) : call.params;
  const forwarded = await forward(services, base, decision.rule, reservation, connection, {
    params: { ...params, name: routed.tool.name },
    signal: call.signal,
    ...(call.sendProgress ? { sendProgress: call.sendProgress } : {}),
  });
  metrics.callDuration.observe(
    { server: base.server, outcome: forwarded.outcome },
    (performance.now() - started) / 1000,
  );
  if (forwarded.error) throw forwarded.error;
  if (forwarded.created)
    return new GatewayTasks(services).fromUpstream(caller, routed.server, forwarded.created);
  return forwarded.result;
}

/** The params of a tools/call without its task request. */
export function withoutTask(params: CallToolRequest['params']): CallToolRequest['params'] {
  const { task: _task, ...rest } = params;
  return rest;
}

const AUDIT_UNAVAILABLE: RefusalDetail = {
  reason: 'audit_unavailable',
  message:
    'the audit trail cannot be written (Redis cannot be reached), so no call is allowed; try again shortly.',
};

/** Writes the allow decision; on failure gives the counters back and returns false (the call is refused). */
export async function auditAllowed(
  services: GatewayServices,
  base: EventBase,
  rule: RuleRef,
  message: string,
  reservation: Reservation,
  reason: 'allowed' | 'approved',
): Promise<boolean> {
  const event = decisionEvent(services.now(), base, 'allow', { reason, message, rule }, reservation.counters);
  try {
    await services.audit.append(event);
    return true;
  } catch (error) {
    services.metrics.auditFailures.inc();
    services.logger.error(
      { err: (error as Error).message, callId: base.callId },
      'audit write failed; refusing the call',
    );
    await services.limits.release(reservation).catch(() => undefined);
    return false;
  }
}

export interface Forwarded {
  result: CallToolResult;
  /** The upstream answered a task-augmented call with a task of its own. */
  created?: CreateTaskResult;
  outcome: AuditOutcome;
  /** Set when the upstream call failed: the JSON-RPC error to answer with. */
  error?: McpError;
}

/**
 * Sends an allowed (or approved) call upstream, relays its progress, gives the counters back if it never got
 * there, and writes the result event. Never throws: a failure comes back as `error`.
 */
export async function forward(
  services: GatewayServices,
  base: EventBase,
  rule: RuleRef,
  reservation: Reservation,
  connection: UpstreamConnection,
  call: DownstreamCall,
): Promise<Forwarded> {
  const { metrics } = services;
  return services.inflight.track(async () => {
    metrics.inflight.inc();
    const forwardStarted = performance.now();
    let outcome: AuditOutcome = 'ok';
    let errorText: string | undefined;
    // Progress is relayed in order, and all of it before the result (the result closes the client's stream).
    let progressSent: Promise<void> = Promise.resolve();
    let relayedProgress = false;
    const relay = call.sendProgress;
    try {
      if (call.params.task !== undefined) {
        const created = await connection.request(
          { method: 'tools/call', params: call.params },
          CreateTaskResultSchema,
          { signal: call.signal },
        );
        outcome = 'task_created';
        return { outcome, created, result: { content: [] } };
      }
      if (call.upstreamTask) {
        // The upstream runs this tool only as a task: create it and wait for its result.
        const created = await connection.request(
          { method: 'tools/call', params: { ...call.params, task: {} } },
          CreateTaskResultSchema,
          { signal: call.signal },
        );
        const result = await awaitUpstreamTask(connection, created.task.taskId, call.signal);
        if (result.isError) outcome = 'tool_error';
        return { result, outcome };
      }
      const result = (await connection.request(
        { method: 'tools/call', params: call.params },
        CallToolResultSchema,
        {
          signal: call.signal,
          ...(relay
            ? {
                onprogress: (p: Progress) => {
                  relayedProgress = true;
                  progressSent = progressSent.then(() => relay(p)).catch(() => undefined);
                },
              }
            : {}),
        },
      )) as CallToolResult;
      if (relayedProgress) {
        await progressSent;
        // Clients built on the MCP SDK drop a progress notification that arrives in the same read as the
        // result; a short pause lets the last one go out on its own.
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      if (result.isError) outcome = 'tool_error';
      return { result, outcome };
    } catch (error) {
      outcome = error instanceof UpstreamInterruptedError ? 'interrupted' : 'upstream_error';
      errorText = (error as Error).message;
      // A call that never reached the server, or whose server died under it, does not use up the agent's limit.
      if (error instanceof UpstreamUnavailableError || error instanceof UpstreamInterruptedError) {
        await services.limits.release(reservation).catch(() => undefined);
      }
      const mcpError =
        error instanceof McpError
          ? error
          : new McpError(ErrorCode.InternalError, `upstream call failed: ${errorText}`);
      return {
        outcome,
        error: mcpError,
        result: {
          isError: true,
          content: [{ type: 'text', text: `upstream call failed: ${mcpError.message}` }],
        },
      };
    } finally {
      metrics.inflight.dec();
      const durationMs = Math.round((performance.now() - forwardStarted) * 1000) / 1000;
      await writeAudit(services, {
        ...base,
        id: newUlid(),
        time: new Date(services.now()).toISOString(),
        type: 'result',
        decision: 'allow',
        reason: base.approvalId ? 'approved' : 'allowed',
        rule: ruleLabel(rule),
        message: null,
        counters: reservation.counters,
        outcome,
        durationMs,
        ...(errorText ? { error: errorText } : {}),
      });
    }
  });
}

export function decisionEvent(
  time: number,
  base: EventBase,
  decision: 'allow' | 'deny',
  detail: RefusalDetail,
  counters: CounterUse[],
): AuditEvent {
  return {
    ...base,
    id: newUlid(),
    time: new Date(time).toISOString(),
    type: 'decision',
    decision,
    reason: detail.reason,
    rule: ruleLabel(detail.rule),
    message: detail.message,
    counters,
  };
}
