import { setMaxListeners } from 'node:events';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, McpError, ProgressNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type {
  ClientCapabilities,
  Implementation,
  JSONRPCRequest,
  LoggingLevel,
  Notification,
  Progress,
  Result,
  ServerCapabilities,
} from '@modelcontextprotocol/sdk/types.js';
import type { z } from 'zod';
import type { ServerEntry } from '../config/load.js';
import { isStdioServer } from '../config/schema.js';
import { createUpstreamFetch } from './http-fetch.js';
import type { Logger } from '../log/logger.js';

/** What an upstream server sends that is not a reply: relayed to the downstream client of this session. */
export interface UpstreamEvents {
  notification(notification: Notification): Promise<void>;
  request(request: JSONRPCRequest, signal: AbortSignal): Promise<Result>;
  /** The upstream restarted and reconnected (its tools may have changed). */
  reconnected(): void;
}

/** The upstream connection closed while the request was in flight: it may or may not have run, and is not re-sent. */
export class UpstreamInterruptedError extends McpError {
  constructor(server: string, method: string) {
    super(
      ErrorCode.InternalError,
      `upstream server "${server}" closed the connection while "${method}" was in flight; the request was not retried`,
    );
  }
}

/** The upstream did not answer within the server's timeout_ms. */
export class UpstreamTimeoutError extends McpError {
  constructor(server: string, method: string, timeoutMs: number) {
    super(
      ErrorCode.RequestTimeout,
      `upstream server "${server}" did not answer "${method}" within ${timeoutMs} ms (timeout_ms); the gateway stopped waiting and asked it to cancel`,
    );
  }
}

/** The call could not be sent: the upstream server is not connected. Nothing reached it. */
export class UpstreamUnavailableError extends McpError {
  readonly reachedUpstream = false;
  constructor(server: string, detail: string) {
    super(ErrorCode.InternalError, `upstream server "${server}" is unavailable: ${detail}`);
  }
}

const BACKOFF_MS = [250, 500, 1000, 2000, 5000, 10_000, 30_000];

export interface UpstreamRequestOptions {
  signal?: AbortSignal;
  /** Receives the upstream's progress notifications for this request, in order, before its result. */
  onprogress?: (progress: Progress) => void;
}

let nextProgressToken = 0;

/**
 * One client connection to one upstream MCP server, for one downstream session (so requests the
 * server sends back, like sampling or elicitation, reach the client whose call caused them).
 * A stdio server that exits is restarted with backoff; requests in flight fail with a clear error
 * and are never re-sent.
 */
export class UpstreamConnection {
  private client: Client | undefined;
  private connected = false;
  private closing = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private lastError = 'not connected yet';
  private logLevel: LoggingLevel | undefined;
  private readonly subscriptions = new Set<string>();
  /**
   * Progress listeners by our own progress token. The SDK's built-in routing drops a progress notification
   * that arrives in the same read as the response (it handles notifications a microtask later, after the
   * response has removed the listener); routing here runs before the awaiting caller resumes.
   */
  private readonly progressListeners = new Map<string, (progress: Progress) => void>();

  constructor(
    readonly entry: ServerEntry,
    private readonly clientInfo: Implementation,
    private readonly clientCapabilities: ClientCapabilities,
    private readonly events: UpstreamEvents,
    private readonly logger: Logger,
  ) {}

  get name(): string {
    return this.entry.name;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  get capabilities(): ServerCapabilities {
    return this.client?.getServerCapabilities() ?? {};
  }

  get serverInfo(): Implementation | undefined {
    return this.client?.getServerVersion();
  }

  get instructions(): string | undefined {
    return this.client?.getInstructions();
  }

  async connect(): Promise<void> {
    const config = this.entry.config;
    if (isStdioServer(config)) {
      await this.connectWith(() => this.stdioTransport());
      return;
    }
    const url = new URL(config.url);
    const requestInit = { headers: config.headers };
    if (config.transport === 'sse') {
      await this.connectWith(
        () => new SSEClientTransport(url, { requestInit, fetch: fetchWithSharedSignal }),
      );
      return;
    }
    try {
      await this.connectWith(
        () => new StreamableHTTPClientTransport(url, { requestInit, fetch: upstreamFetch }),
      );
    } catch (error) {
      if (config.transport === 'streamable-http') throw error;
      this.logger.info(
        { server: this.name, err: (error as Error).message },
        'Streamable HTTP failed; trying SSE',
      );
      await this.connectWith(
        () => new SSEClientTransport(url, { requestInit, fetch: fetchWithSharedSignal }),
      );
    }
  }

  private stdioTransport(): StdioClientTransport {
    const config = this.entry.config;
    if (!isStdioServer(config)) throw new Error('not a stdio server');
    const transport = new StdioClientTransport({
      command: config.command,
      args: config.args,
      env: { ...inheritedEnv(), ...config.env },
      cwd: this.entry.cwd,
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim()) this.logger.debug({ server: this.name, stderr: line }, 'upstream stderr');
      }
    });
    return transport;
  }

  private async connectWith(makeTransport: () => Transport): Promise<void> {
    const client = new Client(this.clientInfo, { capabilities: this.clientCapabilities });
    client.fallbackNotificationHandler = (notification) => this.events.notification(notification);
    client.fallbackRequestHandler = (request, extra) => this.events.request(request, extra.signal);
    client.setNotificationHandler(ProgressNotificationSchema, async (notification) => {
      const { progressToken, ...progress } = notification.params;
      this.progressListeners.get(String(progressToken))?.(progress);
    });
    const transport = makeTransport();
    client.onclose = () => this.onClosed(client);
    client.onerror = (error) =>
      this.logger.debug({ server: this.name, err: error.message }, 'upstream transport error');
    try {
      await client.connect(transport, { timeout: 30_000 });
    } catch (error) {
      await client.close().catch(() => undefined);
      throw error;
    }
    this.client = client;
    this.connected = true;
    this.attempt = 0;
  }

  private onClosed(client: Client): void {
    if (client !== this.client) return;
    this.connected = false;
    if (this.closing) return;
    this.lastError = 'the server exited or closed the connection';
    this.logger.warn({ server: this.name }, 'upstream server disconnected; reconnecting with backoff');
    this.scheduleReconnect();
  }

  /** Drops a connection whose HTTP session the server forgot; onClosed then reconnects with backoff. */
  private sessionLost(client: Client): void {
    if (client !== this.client || this.closing) return;
    this.logger.warn({ server: this.name }, 'upstream server lost our session; reconnecting');
    void client.close().catch(() => undefined);
  }

  private scheduleReconnect(): void {
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] ?? 30_000;
    this.attempt += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.reconnect();
    }, delay);
    this.reconnectTimer.unref();
  }

  private async reconnect(): Promise<void> {
    if (this.closing) return;
    try {
      await this.connect();
      if (this.logLevel && this.capabilities.logging) {
        await this.client?.setLoggingLevel(this.logLevel).catch(() => undefined);
      }
      for (const uri of this.subscriptions) {
        await this.client?.subscribeResource({ uri }).catch(() => undefined);
      }
      this.logger.info({ server: this.name }, 'upstream server reconnected');
      this.events.reconnected();
    } catch (error) {
      this.lastError = (error as Error).message;
      this.logger.warn({ server: this.name, err: this.lastError }, 'upstream reconnect failed');
      if (!this.closing) this.scheduleReconnect();
    }
  }

  /**
   * Sends a request upstream. Throws UpstreamUnavailableError (nothing was sent) when not connected;
   * a connection lost mid-request surfaces as an McpError saying the call was interrupted.
   */
  async request<S extends z.ZodType>(
    request: { method: string; params?: Record<string, unknown> },
    schema: S,
    options: UpstreamRequestOptions = {},
  ): Promise<z.infer<S>> {
    const client = this.client;
    if (!client || !this.connected) throw new UpstreamUnavailableError(this.name, this.lastError);
    let params = request.params;
    let token: string | undefined;
    if (options.onprogress) {
      token = `cs-${++nextProgressToken}`;
      this.progressListeners.set(token, options.onprogress);
      const meta = (params?._meta ?? {}) as Record<string, unknown>;
      params = { ...params, _meta: { ...meta, progressToken: token } };
    }
    try {
      return (await client.request({ method: request.method, params }, schema, {
        timeout: this.entry.config.timeout_ms,
        ...(options.signal ? { signal: options.signal } : {}),
      })) as z.infer<S>;
    } catch (error) {
      if (isLostSession(error)) {
        // The server no longer knows this session (it restarted, or expired it): nothing was run. Reconnect
        // with a new session, as after a disconnect; this call is answered as unavailable.
        this.sessionLost(client);
        throw new UpstreamUnavailableError(this.name, 'the server no longer knows our session; reconnecting');
      }
      if (error instanceof McpError && error.code === ErrorCode.ConnectionClosed) {
        throw new UpstreamInterruptedError(this.name, request.method);
      }
      if (error instanceof McpError && error.code === ErrorCode.RequestTimeout && !options.signal?.aborted) {
        throw new UpstreamTimeoutError(this.name, request.method, this.entry.config.timeout_ms);
      }
      throw error;
    } finally {
      if (token) this.progressListeners.delete(token);
    }
  }

  async notify(notification: Notification): Promise<void> {
    if (!this.client || !this.connected) return;
    await this.client.notification(notification);
  }

  rememberLogLevel(level: LoggingLevel): void {
    this.logLevel = level;
  }

  rememberSubscription(uri: string, subscribed: boolean): void {
    if (subscribed) this.subscriptions.add(uri);
    else this.subscriptions.delete(uri);
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.connected = false;
    await this.client?.close().catch(() => undefined);
  }
}

/** Every Streamable HTTP upstream request of this process: one keep-alive connection pool per scheme. */
const upstreamFetch = createUpstreamFetch();

/**
 * For the legacy SSE transport (undici's fetch). The SDK's HTTP client transports pass one long-lived
 * AbortSignal to every fetch, and undici keeps its abort listener until the request is garbage-collected:
 * under load Node warns of a listener leak on every call. The listeners are released; only the warning
 * threshold is lifted for that signal. (`upstreamFetch` listens only while a request runs.)
 */
const fetchWithSharedSignal: typeof fetch = (input, init) => {
  if (init?.signal) setMaxListeners(0, init.signal);
  return fetch(input, init);
};

/**
 * Whether a Streamable HTTP request failed because the server does not know the session id it was sent
 * with: 404 (what the spec prescribes), or 400 naming the session (what some servers, server-everything
 * among them, answer instead).
 */
export function isLostSession(error: unknown): boolean {
  if (!(error instanceof StreamableHTTPError)) return false;
  if (error.code === 404) return true;
  return error.code === 400 && /session/i.test(error.message);
}

/** The few variables a child needs to run (never the gateway's secrets). */
function inheritedEnv(): Record<string, string> {
  const names = ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER', 'LANG', 'TMPDIR'];
  const env: Record<string, string> = {};
  for (const name of names) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}
