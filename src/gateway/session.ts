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
  ClientCapabilities,
  Implementation,
  JSONRPCRequest,
  Notification,
  RequestId,
  Result,
  ServerCapabilities,
  Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { ServerEntry } from '../config/load.js';
import { findRule, isHidden } from '../policy/decide.js';
import { UpstreamConnection } from '../upstream/connection.js';
import { ToolCatalog } from './catalog.js';
import { handle } from './handlers.js';
import { exposedTaskSupport, handleToolCall, upstreamTaskSupport } from './pipeline.js';
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
 * Tool calls go through the pipeline; everything else is relayed (routed by name or URI when several
 * servers are aggregated), including requests and notifications the upstream sends back.
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
      // The client's own task support is not offered upstream: the gateway does not relay client-side tasks.
      const { tasks: _clientTasks, ...clientCapabilities } = options.clientCapabilities;
      const connection = new UpstreamConnection(
        entry,
        options.clientInfo,
        clientCapabilities,
        {
          notification: async (n) => {
            await sessionReady;
            await ref.session?.fromUpstream(entry.name, n);
          },
          request: async (r, signal) => {
            await sessionReady;
            if (!ref.session)
              throw new McpError(ErrorCode.InternalError, 'the downstream session could not be opened');
            return ref.session.requestFromUpstream(r, signal);
          },
          reconnected: () => ref.session?.upstreamReconnected(entry.name),
        },
        services.logger.child({ server: entry.name, session: options.caller.sessionId }),
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

    if (caps.tools) {
      handle(this.server, ListToolsRequestSchema, async () => ({ tools: await this.visibleTools() }));
      // Tracked from start to answer, so that shutdown waits for calls still on their way through.
      handle(this.server, CallToolRequestSchema, (request, extra) =>
        this.services.inflight.track(async () => {
          this.openRequests.add(extra.requestId);
          try {
            const token = request.params._meta?.progressToken;
            const result = await handleToolCall(this.services, this.caller, this.catalog, this.connections, {
              params: request.params,
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
      handle(this.server, GetTaskRequestSchema, async (request, extra) =>
        this.tasks.get(this.caller, request.params.taskId, upstreams, extra.signal),
      );
      handle(this.server, GetTaskPayloadRequestSchema, async (request, extra) =>
        this.tasks.result(this.caller, request.params.taskId, upstreams, extra.signal),
      );
      handle(this.server, ListTasksRequestSchema, async (request, extra) =>
        this.tasks.list(this.caller, request.params?.cursor, upstreams, extra.signal),
      );
      handle(this.server, CancelTaskRequestSchema, async (request, extra) =>
        this.tasks.cancel(this.caller, request.params.taskId, upstreams, extra.signal),
      );
    }
    if (caps.resources) {
      handle(this.server, ListResourcesRequestSchema, async (request, extra) =>
        router.list('resources/list', 'resources', request.params, ListResourcesResultSchema, extra.signal),
      );
      handle(this.server, ListResourceTemplatesRequestSchema, async (request, extra) =>
        router.list(
          'resources/templates/list',
          'resourceTemplates',
          request.params,
          ListResourceTemplatesResultSchema,
          extra.signal,
        ),
      );
      handle(this.server, ReadResourceRequestSchema, async (request, extra) =>
        router.byUri('resources/read', request.params, ReadResourceResultSchema, extra.signal),
      );
      handle(this.server, SubscribeRequestSchema, async (request, extra) => {
        const result = await router.byUri(
          'resources/subscribe',
          request.params,
          EmptyResultSchema,
          extra.signal,
        );
        router.connectionForUri(request.params.uri)?.rememberSubscription(request.params.uri, true);
        return result;
      });
      handle(this.server, UnsubscribeRequestSchema, async (request, extra) => {
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
      handle(this.server, ListPromptsRequestSchema, async (request, extra) =>
        router.list('prompts/list', 'prompts', request.params, ListPromptsResultSchema, extra.signal),
      );
      handle(this.server, GetPromptRequestSchema, async (request, extra) =>
        router.byName('prompts/get', request.params, GetPromptResultSchema, extra.signal),
      );
    }
    if (caps.completions) {
      handle(this.server, CompleteRequestSchema, async (request, extra) =>
        router.complete(request.params, CompleteResultSchema, extra.signal),
      );
    }
    if (caps.logging) {
      handle(this.server, SetLevelRequestSchema, async (request, extra) => {
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
    // Anything else (extensions, future methods) passes through unchanged when there is one upstream.
    this.server.fallbackRequestHandler = async (request: JSONRPCRequest, extra) => {
      const only = router.single;
      if (!only) throw new McpError(ErrorCode.MethodNotFound, `Method not found: ${request.method}`);
      return only.request({ method: request.method, params: request.params }, ResultSchema, {
        signal: extra.signal,
      });
    };
    this.server.fallbackNotificationHandler = async (notification: Notification) => {
      await Promise.all(
        [...this.connections.values()].map((c) => c.notify(notification).catch(() => undefined)),
      );
    };
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

  private async requestFromUpstream(request: JSONRPCRequest, signal: AbortSignal): Promise<Result> {
    await this.clientReady;
    const related = [...this.openRequests].pop();
    return this.server.request({ method: request.method, params: request.params }, ResultSchema, {
      signal,
      ...(related !== undefined ? { relatedRequestId: related } : {}),
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
