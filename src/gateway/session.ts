import { setMaxListeners } from 'node:events';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  CancelTaskRequestSchema,
  GetTaskPayloadRequestSchema,
  GetTaskRequestSchema,
  ListTasksRequestSchema,
  CompleteRequestSchema,
  CompleteResultSchema,
  EmptyResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  GetPromptResultSchema,
  ListPromptsRequestSchema,
  ListPromptsResultSchema,
  ListResourcesRequestSchema,
  ListResourcesResultSchema,
  ListResourceTemplatesRequestSchema,
  ListResourceTemplatesResultSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  ReadResourceResultSchema,
  ResultSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type {
  CallToolResult,
  ClientCapabilities,
  CreateTaskResult,
  Implementation,
  JSONRPCMessage,
  JSONRPCRequest,
  Notification,
  Progress,
  RequestId,
  Result,
  ServerCapabilities,
  Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { z } from 'zod';
import type { ServerEntry } from '../config/load.js';
import { findRule, isHidden } from '../policy/decide.js';
import { UpstreamConnection } from '../upstream/connection.js';
import { ToolCatalog } from './catalog.js';
import { handlerRegistrar } from './handlers.js';
import { allowedMethod, boundedText, isAllowedMethod } from './methods.js';
import { auditProtocolRefusal, MAX_METHOD_CHARS } from './protocol-refusal.js';
import type { ProtocolRefusal } from './protocol-refusal.js';
import { exposedTaskSupport, handleToolCall, upstreamTaskSupport } from './pipeline.js';
import type { DownstreamCall } from './pipeline.js';
import { GatewayTasks } from './tasks.js';
import type { CallerIdentity, GatewayServices } from './services.js';
import { UpstreamRouter } from './router.js';

export interface SessionOptions {
  caller: CallerIdentity;
  /** The servers this endpoint exposes: one for `/mcp/<server>`, all for `/mcp`. */
  servers: readonly ServerEntry[];
  clientInfo: Implementation;
  clientCapabilities: ClientCapabilities;
}

/** Added to the description of a tool whose calls may wait for a person. */
export const APPROVAL_NOTE =
  '[Countersign] A person may have to approve calls to this tool before they run; such a call waits for them ' +
  '(up to the approval timeout). Call it as a task to get a task at once and its result later.';

const GATEWAY_INFO: Implementation = { name: 'countersign', version: '0.1.0' };

/**
 * One downstream MCP session: a Server facing the client, and one upstream connection per exposed server.
 * Tool calls go through the pipeline; the other methods on the allow-list (methods.ts) are relayed (routed by
 * name or URI when several servers are aggregated), in both directions. Anything else is refused where it
 * arrives and audited as a protocol refusal (protocol-refusal.ts); it never reaches the other side.
 */
export class GatewaySession {
  readonly server: Server;
  readonly catalog: ToolCatalog;
  private readonly router: UpstreamRouter;
  /** Open downstream requests, newest last: requests the upstream sends back are related to one of them. */
  private readonly openRequests = new Set<RequestId>();
  private closed = false;
  /** Aborted when the session closes: approved calls this session parked can run until then. */
  private readonly lifetime = lifetimeController();
  /** Requests from upstream wait until the client has finished initializing (spec: nothing but pings before). */
  private readonly clientReady: Promise<void>;
  private readonly tasks: GatewayTasks;

  private constructor(
    private readonly services: GatewayServices,
    readonly caller: CallerIdentity,
    private readonly connections: Map<string, UpstreamConnection>,
  ) {
    const prefixed = connections.size > 1;
    this.tasks = new GatewayTasks(services);
    this.catalog = new ToolCatalog(connections, prefixed);
    this.router = new UpstreamRouter(connections, prefixed);
    const single = prefixed ? undefined : [...connections.values()][0];
    const capabilities = mergeCapabilities([...connections.values()].map((c) => c.capabilities));
    this.server = new Server(single?.serverInfo ?? GATEWAY_INFO, {
      capabilities,
      ...(single?.instructions ? { instructions: single.instructions } : {}),
    });
    this.registerHandlers(capabilities);
    this.clientReady = new Promise((resolve) => {
      this.server.oninitialized = () => resolve();
    });
  }

  static async open(services: GatewayServices, options: SessionOptions): Promise<GatewaySession> {
    const connections = new Map<string, UpstreamConnection>();
    // Upstream events can arrive while the session is being built; they wait for it.
    const ref: { session?: GatewaySession } = {};
    let markReady: () => void = () => undefined;
    const sessionReady = new Promise<void>((resolve) => {
      markReady = resolve;
    });
    for (const entry of options.servers) {
      const logger = services.logger.child({ server: entry.name, session: options.caller.sessionId });
      // The client's own task support is not offered upstream: the gateway does not relay client-side tasks.
      const { tasks: _clientTasks, ...clientCapabilities } = options.clientCapabilities;
      const connection = new UpstreamConnection(
        entry,
        options.clientInfo,
        clientCapabilities,
        {
          // Only allow-listed methods travel back to the client (ping, cancellation and progress are handled
          // before this): an unknown request gets -32601, an unknown notification is dropped.
          notification: async (n) => {
            if (!isAllowedMethod('serverNotifications', n.method)) {
              logger.debug(
                { method: boundedText(n.method, MAX_METHOD_CHARS) },
                'upstream notification dropped',
              );
              return;
            }
            await sessionReady;
            await ref.session?.fromUpstream(entry.name, n);
          },
          request: async (r, signal) => {
            if (!isAllowedMethod('serverRequests', r.method)) {
              const method = boundedText(r.method, MAX_METHOD_CHARS);
              logger.debug({ method }, 'upstream request refused');
              throw new McpError(
                ErrorCode.MethodNotFound,
                `Method not found: ${method} (the gateway relays only the MCP requests it knows to its client)`,
              );
            }
            await sessionReady;
            if (!ref.session)
              throw new McpError(ErrorCode.InternalError, 'the downstream session could not be opened');
            return ref.session.requestFromUpstream(entry.name, r, signal);
          },
          reconnected: () => ref.session?.upstreamReconnected(entry.name),
        },
        logger,
      );
      connections.set(entry.name, connection);
    }
    try {
      await Promise.all([...connections.values()].map((c) => c.connect()));
    } catch (error) {
      markReady();
      await Promise.all([...connections.values()].map((c) => c.close()));
      throw new McpError(
        ErrorCode.InternalError,
        `cannot connect to the upstream server: ${(error as Error).message}`,
      );
    }
    const session = new GatewaySession(services, options.caller, connections);
    ref.session = session;
    markReady();
    services.metrics.sessions.inc();
    return session;
  }

  private registerHandlers(caps: ServerCapabilities): void {
    const { router } = this;
    // (tools/call is checked by the SDK before any handler runs: see connect().)
    const on = handlerRegistrar(this.server, (request, message) =>
      this.refused({ method: request.method, reason: 'invalid_params', message }),
    );

    if (caps.tools) {
      on(ListToolsRequestSchema, async () => ({ tools: await this.visibleTools() }));
      // Tracked from start to answer, so that shutdown waits for calls still on their way through.
      on(CallToolRequestSchema, (request, extra) =>
        this.services.inflight.track(async () => {
          this.openRequests.add(extra.requestId);
          try {
            const token = request.params._meta?.progressToken;
            const result = await this.policedCall(request.params, {
              signal: extra.signal,
              sessionSignal: this.lifetime.signal,
              ...(token !== undefined
                ? {
                    sendProgress: (p) =>
                      extra.sendNotification({
                        method: 'notifications/progress',
                        params: { ...p, progressToken: token },
                      }),
                  }
                : {}),
            });
            const task = request.params.task;
            // Asked as a task but answered at once (refused, or allowed and run): the answer becomes a settled task.
            if (task && !('task' in result)) {
              const server = this.catalog.parse(request.params.name)?.server ?? '';
              return await this.tasks.settled(this.caller, server, result, task.ttl);
            }
            return result;
          } finally {
            this.openRequests.delete(extra.requestId);
          }
        }),
      );
      const upstreams = (server: string): UpstreamConnection | undefined => this.connections.get(server);
      on(GetTaskRequestSchema, async (request, extra) =>
        this.tasks.get(this.caller, request.params.taskId, upstreams, extra.signal),
      );
      on(GetTaskPayloadRequestSchema, async (request, extra) =>
        this.tasks.result(this.caller, request.params.taskId, upstreams, extra.signal),
      );
      on(ListTasksRequestSchema, async (request, extra) =>
        this.tasks.list(this.caller, request.params?.cursor, upstreams, extra.signal),
      );
      on(CancelTaskRequestSchema, async (request, extra) =>
        this.tasks.cancel(this.caller, request.params.taskId, upstreams, extra.signal),
      );
    }
    if (caps.resources) {
      on(ListResourcesRequestSchema, async (request, extra) =>
        router.list('resources/list', 'resources', request.params, ListResourcesResultSchema, extra.signal),
      );
      on(ListResourceTemplatesRequestSchema, async (request, extra) =>
        router.list(
          'resources/templates/list',
          'resourceTemplates',
          request.params,
          ListResourceTemplatesResultSchema,
          extra.signal,
        ),
      );
      on(ReadResourceRequestSchema, async (request, extra) =>
        router.byUri('resources/read', request.params, ReadResourceResultSchema, extra.signal),
      );
      on(SubscribeRequestSchema, async (request, extra) => {
        const result = await router.byUri(
          'resources/subscribe',
          request.params,
          EmptyResultSchema,
          extra.signal,
        );
        router.connectionForUri(request.params.uri)?.rememberSubscription(request.params.uri, true);
        return result;
      });
      on(UnsubscribeRequestSchema, async (request, extra) => {
        const result = await router.byUri(
          'resources/unsubscribe',
          request.params,
          EmptyResultSchema,
          extra.signal,
        );
        router.connectionForUri(request.params.uri)?.rememberSubscription(request.params.uri, false);
        return result;
      });
    }
    if (caps.prompts) {
      on(ListPromptsRequestSchema, async (request, extra) =>
        router.list('prompts/list', 'prompts', request.params, ListPromptsResultSchema, extra.signal),
      );
      on(GetPromptRequestSchema, async (request, extra) =>
        router.byName('prompts/get', request.params, GetPromptResultSchema, extra.signal),
      );
    }
    if (caps.completions) {
      on(CompleteRequestSchema, async (request, extra) =>
        router.complete(request.params, CompleteResultSchema, extra.signal),
      );
    }
    if (caps.logging) {
      on(SetLevelRequestSchema, async (request, extra) => {
        await router.broadcast(
          'logging/setLevel',
          request.params,
          (c) => Boolean(c.capabilities.logging),
          extra.signal,
        );
        for (const c of this.connections.values()) c.rememberLogLevel(request.params.level);
        return {};
      });
    }
    // Only what is registered above is relayed: any other method (unknown, differently cased, an extension, or
    // one of a capability no upstream offers) is refused here and never reaches an upstream.
    this.server.fallbackRequestHandler = async (request: JSONRPCRequest) => {
      const method = boundedText(request.method, MAX_METHOD_CHARS);
      const message = isAllowedMethod('clientRequests', request.method)
        ? `Method not found: ${method} (no upstream server of this endpoint offers it)`
        : `Method not found: ${method} (the gateway relays only the MCP methods it knows, spelled exactly)`;
      this.refused({ method: request.method, reason: 'unknown_method', message });
      throw new McpError(ErrorCode.MethodNotFound, message);
    };
    // A notification gets no answer, so a refused one is only audited. Request-shaped ones (`tools/call` with
    // no id) are refused here: a notification never runs a tool.
    this.server.fallbackNotificationHandler = async (notification: Notification) => {
      const allowed = allowedMethod('clientNotifications', notification.method);
      if (allowed?.passage === 'relayed') {
        await Promise.all(
          [...this.connections.values()].map((c) => c.notify(notification).catch(() => undefined)),
        );
        return;
      }
      if (allowed) return;
      this.refused({
        method: notification.method,
        reason: 'notification_refused',
        message: `Notification ${boundedText(notification.method, MAX_METHOD_CHARS)} is not one the gateway relays; it was dropped`,
      });
    };
  }

  /** A tools/call through the pipeline; a task asked of a tool without task support is audited as probing. */
  private async policedCall(
    params: DownstreamCall['params'],
    call: Omit<DownstreamCall, 'params'>,
  ): Promise<CallToolResult | CreateTaskResult> {
    try {
      return await handleToolCall(this.services, this.caller, this.catalog, this.connections, {
        ...call,
        params,
      });
    } catch (error) {
      if (params.task !== undefined && error instanceof McpError && error.code === ErrorCode.MethodNotFound)
        this.refused({
          method: 'tools/call',
          tool: params.name,
          reason: 'task_not_supported',
          message: error.message,
        });
      throw error;
    }
  }

  /** Audits one protocol-level refusal (bounded, without holding up the answer). */
  private refused(refusal: Omit<ProtocolRefusal, 'caller' | 'server'>): void {
    const parsed = refusal.tool !== undefined ? this.catalog.parse(refusal.tool) : undefined;
    const server = parsed?.server ?? (this.connections.size === 1 ? [...this.connections.keys()][0] : '');
    auditProtocolRefusal(this.services, {
      ...refusal,
      ...(parsed ? { tool: parsed.tool } : {}),
      caller: this.caller,
      server: server ?? '',
    });
  }

  /**
   * Connects the client's transport. Every message is looked at first: the SDK's Server refuses a tools/call
   * with invalid params (-32602) before any handler of ours runs, so that refusal is audited here.
   */
  async connect(transport: Transport): Promise<void> {
    transport.onmessage = (message) => this.auditInvalidToolCall(message);
    await this.server.connect(transport);
  }

  private auditInvalidToolCall(message: JSONRPCMessage): void {
    if (!('method' in message) || !('id' in message) || message.method !== 'tools/call') return;
    const checked = CallToolRequestSchema.safeParse(message);
    if (checked.success) return;
    const name = (message.params as { name?: unknown } | undefined)?.name;
    this.refused({
      method: message.method,
      ...(typeof name === 'string' ? { tool: name } : {}),
      reason: 'invalid_params',
      message: `Invalid params for tools/call: ${z.prettifyError(checked.error)}`,
    });
  }

  /** Tools of every exposed server, less the ones the grant's policy hides; prefixed when aggregated. */
  private async visibleTools(): Promise<Tool[]> {
    const lists = await Promise.all(
      [...this.connections.keys()].map(async (server) => {
        const policy = this.services.policies.resolve(server, this.caller.grant.id);
        const tools = await this.catalog.toolsOf(server);
        const connection = this.connections.get(server);
        return tools
          .filter((tool) => policy !== undefined && !isHidden(policy, tool.name))
          .map((tool) => {
            const exposed = { ...tool, name: this.catalog.exposedName(server, tool.name) };
            const mayNeedApproval =
              policy !== undefined && findRule(policy, tool.name)?.approval !== undefined;
            if (!mayNeedApproval || !connection) return exposed;
            const taskSupport = exposedTaskSupport(true, upstreamTaskSupport(connection, tool));
            return {
              ...exposed,
              description: `${tool.description ?? ''}${tool.description ? '\n\n' : ''}${APPROVAL_NOTE}`,
              execution: { ...tool.execution, taskSupport },
            };
          });
      }),
    );
    return lists.flat();
  }

  private async fromUpstream(server: string, notification: Notification): Promise<void> {
    if (this.closed) return;
    if (notification.method === 'notifications/tools/list_changed') this.catalog.invalidate(server);
    if (notification.method === 'notifications/resources/list_changed') this.router.forgetUris(server);
    await this.server.notification(notification).catch((error: Error) => {
      this.services.logger.debug(
        { err: error.message, method: notification.method },
        'notification not relayed',
      );
    });
  }

  private async requestFromUpstream(
    server: string,
    request: JSONRPCRequest,
    signal: AbortSignal,
  ): Promise<Result> {
    await this.clientReady;
    const related = [...this.openRequests].pop();
    // The client's progress on this request goes back to the upstream under the token the upstream chose.
    const upstreamToken = request.params?._meta?.progressToken;
    const connection = this.connections.get(server);
    return this.server.request({ method: request.method, params: request.params }, ResultSchema, {
      signal,
      ...(related !== undefined ? { relatedRequestId: related } : {}),
      ...(upstreamToken !== undefined && connection
        ? {
            onprogress: (progress: Progress) =>
              void connection
                .notify({
                  method: 'notifications/progress',
                  params: { ...progress, progressToken: upstreamToken },
                })
                .catch(() => undefined),
          }
        : {}),
    });
  }

  private upstreamReconnected(server: string): void {
    this.catalog.invalidate(server);
    if (this.closed) return;
    void this.server.sendToolListChanged().catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.lifetime.abort();
    this.services.metrics.sessions.dec();
    await Promise.all([...this.connections.values()].map((c) => c.close()));
    await this.server.close().catch(() => undefined);
  }
}

/** What the gateway offers downstream: the union of what its upstream servers offer. */
export function mergeCapabilities(all: readonly ServerCapabilities[]): ServerCapabilities {
  const merged: ServerCapabilities = {};
  for (const caps of all) {
    if (caps.tools) {
      merged.tools = { listChanged: true };
      // Calls a person must approve can be made as tasks; the gateway keeps the tasks (in Redis).
      merged.tasks = { list: {}, cancel: {}, requests: { tools: { call: {} } } };
    }
    if (caps.resources) {
      merged.resources = {
        subscribe: Boolean(merged.resources?.subscribe || caps.resources.subscribe),
        listChanged: Boolean(merged.resources?.listChanged || caps.resources.listChanged),
      };
    }
    if (caps.prompts)
      merged.prompts = { listChanged: Boolean(merged.prompts?.listChanged || caps.prompts.listChanged) };
    if (caps.logging) merged.logging = {};
    if (caps.completions) merged.completions = {};
    if (caps.experimental) merged.experimental = { ...merged.experimental, ...caps.experimental };
  }
  return merged;
}

/** A session's lifetime signal: every call it parks listens to it, so the listener warning limit is off. */
function lifetimeController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}
