import { randomUUID } from 'node:crypto';
import { InitializeRequestSchema, isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Grant, ServerEntry } from '../config/load.js';
import { sameToken } from '../config/reload.js';
import { GatewaySession } from '../gateway/session.js';
import type { GatewayServices } from '../gateway/services.js';
import { auditProtocolRefusal } from '../gateway/protocol-refusal.js';
import { BodyTooLargeError, readBody } from './body.js';
import { clientAddress } from './auth-throttle.js';
import { refuseWrongToken } from './auth-failure.js';
import type { AuthThrottle } from './auth-throttle.js';
import type { GrantAuthenticator } from './guards.js';
import { bearerToken, jsonRpcError } from './guards.js';
import { NodeStreamableTransport } from './streamable-transport.js';

/** A JSON-RPC message (or batch member) whose method is initialize, valid or not. */
function isInitializeMessage(body: unknown): boolean {
  const messages = Array.isArray(body) ? body : [body];
  return messages.some(
    (m) => typeof m === 'object' && m !== null && (m as { method?: unknown }).method === 'initialize',
  );
}

/** Answers an initialize whose params are invalid with -32602 and the reason; false when it is valid. */
function invalidInitialize(res: ServerResponse, body: unknown): boolean {
  if (isInitializeRequest(body)) return false;
  const checked = InitializeRequestSchema.safeParse(Array.isArray(body) ? body[0] : body);
  const reason = checked.success
    ? 'send exactly one initialize request, not a batch'
    : z.prettifyError(checked.error);
  jsonRpcError(res, 400, -32602, `Invalid params for initialize: ${reason}`);
  return true;
}

function tooManyFailures(res: ServerResponse, refusal: { retryAfterSeconds: number; message: string }): void {
  res.setHeader('Retry-After', String(refusal.retryAfterSeconds));
  jsonRpcError(res, 429, -32001, refusal.message);
}

interface HttpSession {
  session: GatewaySession;
  transport: NodeStreamableTransport;
  /** The endpoint it was opened on (`*` for /mcp): a session id only works there. */
  endpoint: string;
  lastSeen: number;
  openRequests: number;
  /** POSTs not answered yet (a GET stream is not counted: it never ends on its own). */
  postsOpen: number;
  /**
   * A reload revoked its grant or changed the grant's token: no request of it is served any more, and it ends
   * once its POSTs are answered (a held call is told it was refused because the grant is gone).
   */
  ending: boolean;
}

/**
 * Streamable HTTP endpoints: `/mcp` (every server) and `/mcp/<server>`. Each initialize opens a
 * GatewaySession bound to the caller's grant; later requests must present the same grant's token.
 */
export class McpHttpEndpoint {
  private readonly sessions = new Map<string, HttpSession>();
  private readonly reaper: NodeJS.Timeout;
  private readonly trustedProxies: ReadonlySet<string>;
  private accepting = true;

  constructor(
    private readonly services: GatewayServices,
    private readonly auth: GrantAuthenticator,
    private readonly throttle: AuthThrottle,
  ) {
    this.trustedProxies = new Set(services.config.raw.http.trusted_proxies);
    const idle = services.config.raw.http.session_idle_timeout_ms;
    this.reaper = setInterval(() => void this.reapIdle(idle), Math.min(idle, 60_000));
    this.reaper.unref();
  }

  /** Serves `/mcp` (endpoint `*`) or `/mcp/<server>` (endpoint = the server's name). */
  handle = async (req: IncomingMessage, res: ServerResponse, endpoint: string): Promise<void> => {
    // A valid token is served whatever others sent: lockouts only ever refuse wrong tokens. Authentication
    // comes before the server lookup, so a caller without a token cannot list the servers by probing names.
    const grant = this.auth.authenticate(req.headers.authorization);
    if (!grant) {
      const address = clientAddress(
        req.socket.remoteAddress,
        req.headers['x-forwarded-for'],
        this.trustedProxies,
      );
      const refusal = await refuseWrongToken(
        this.services,
        this.throttle,
        address,
        bearerToken(req.headers.authorization),
      );
      if (refusal.status === 429) return tooManyFailures(res, refusal);
      res.setHeader('WWW-Authenticate', 'Bearer realm="countersign"');
      jsonRpcError(
        res,
        401,
        -32001,
        'Unauthorized: a valid bearer token (Authorization: Bearer <token>) is required',
      );
      return;
    }
    const servers = this.serversFor(endpoint);
    if (!servers) {
      jsonRpcError(res, 404, -32000, `No upstream server named "${endpoint}"`);
      return;
    }

    let body: unknown;
    if (req.method === 'POST') {
      try {
        const text = await readBody(req, this.services.config.raw.http.max_body_bytes);
        body = JSON.parse(text);
      } catch (error) {
        if (error instanceof BodyTooLargeError) {
          // The rest of the body is not read: the connection closes after this answer.
          res.setHeader('Connection', 'close');
          jsonRpcError(res, 413, -32600, `Invalid Request: ${error.message}`);
        } else
          jsonRpcError(
            res,
            400,
            -32700,
            `Parse error: the body is not valid JSON (${(error as Error).message})`,
          );
        return;
      }
    }

    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string') {
      const entry = this.sessions.get(sessionId);
      if (
        !entry ||
        entry.ending ||
        entry.endpoint !== endpoint ||
        entry.session.caller.grant.id !== grant.id
      ) {
        jsonRpcError(res, 404, -32001, 'Session not found');
        return;
      }
      if (isInitializeMessage(body)) {
        if (!invalidInitialize(res, body)) {
          jsonRpcError(
            res,
            400,
            -32600,
            'Invalid Request: this session is already initialized; to start over, send initialize without an Mcp-Session-Id header',
          );
        }
        return;
      }
      await this.serve(entry, req, res, body);
      return;
    }

    if (req.method === 'POST' && isInitializeMessage(body) && invalidInitialize(res, body)) return;
    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      jsonRpcError(
        res,
        400,
        -32000,
        'Bad Request: no valid Mcp-Session-Id header; start with an initialize request',
      );
      return;
    }
    if (!this.accepting) {
      jsonRpcError(res, 503, -32000, 'The gateway is shutting down');
      return;
    }
    const init = InitializeRequestSchema.parse(body);
    const id = randomUUID();
    let session: GatewaySession;
    try {
      session = await GatewaySession.open(this.services, {
        caller: { grant, sessionId: id },
        servers,
        clientInfo: init.params.clientInfo,
        clientCapabilities: init.params.capabilities,
      });
    } catch (error) {
      this.services.logger.error({ err: (error as Error).message, endpoint }, 'cannot open session');
      jsonRpcError(res, 502, -32603, (error as Error).message);
      return;
    }
    const transport = new NodeStreamableTransport({
      sessionId: id,
      onsessionclosed: () => void this.drop(id),
      onrefused: (refusal) =>
        auditProtocolRefusal(this.services, {
          ...refusal,
          caller: session.caller,
          server: endpoint === '*' ? '' : endpoint,
        }),
    });
    const entry: HttpSession = {
      session,
      transport,
      endpoint,
      lastSeen: Date.now(),
      openRequests: 0,
      postsOpen: 0,
      ending: false,
    };
    this.sessions.set(id, entry);
    transport.onclose = () => void this.drop(id);
    await session.connect(transport);
    this.services.logger.info({ session: id, grant: grant.id, endpoint }, 'session opened');
    await this.serve(entry, req, res, body);
  };

  private async serve(
    entry: HttpSession,
    req: IncomingMessage,
    res: ServerResponse,
    body: unknown,
  ): Promise<void> {
    entry.lastSeen = Date.now();
    entry.openRequests += 1;
    const post = req.method === 'POST';
    if (post) entry.postsOpen += 1;
    // (A request whose client goes away before its answer is cancelled by the transport.)
    res.once('close', () => {
      entry.openRequests -= 1;
      entry.lastSeen = Date.now();
      if (post) entry.postsOpen -= 1;
      if (entry.ending && entry.postsOpen === 0) void this.drop(entry.transport.sessionId);
    });
    await entry.transport.handleRequest(req, res, body);
  }

  private serversFor(endpoint: string): readonly ServerEntry[] | undefined {
    const all = this.services.config.servers;
    if (endpoint === '*') return all;
    const one = all.find((s) => s.name === endpoint);
    return one ? [one] : undefined;
  }

  private async drop(id: string): Promise<void> {
    const entry = this.sessions.get(id);
    if (!entry) return;
    this.sessions.delete(id);
    this.services.logger.info({ session: id }, 'session closed');
    await entry.session.close();
    await entry.transport.close().catch(() => undefined);
  }

  private async reapIdle(idleMs: number): Promise<void> {
    const now = Date.now();
    for (const [id, entry] of this.sessions) {
      if (entry.openRequests === 0 && now - entry.lastSeen > idleMs) await this.drop(id);
    }
  }

  /**
   * After a reload: sessions whose grant is still in force act with it as it is now (its owner decides
   * self-approval and is audited); those whose grant was revoked, or whose token changed, end — at once, or
   * when their last POST is answered. Until then every request of theirs is refused (401 or 404).
   */
  grantsChanged(grants: readonly Grant[]): void {
    for (const [id, entry] of this.sessions) {
      const caller = entry.session.caller;
      const live = grants.find((g) => g.id === caller.grant.id);
      if (live && sameToken(live, caller.grant)) {
        caller.grant = live;
        continue;
      }
      if (!entry.ending)
        this.services.logger.info(
          { session: id, grant: caller.grant.id },
          live ? 'session ending: its grant has another token now' : 'session ending: its grant was revoked',
        );
      entry.ending = true;
      if (entry.postsOpen === 0) void this.drop(id);
    }
  }

  /** Tells every open session that its tool list may have changed (after a policy reload). */
  notifyToolListChanged(): void {
    for (const entry of this.sessions.values())
      void entry.session.server.sendToolListChanged().catch(() => undefined);
  }

  /** Stops opening sessions (shutdown begins). */
  stopAccepting(): void {
    this.accepting = false;
  }

  async close(): Promise<void> {
    clearInterval(this.reaper);
    await Promise.all([...this.sessions.keys()].map((id) => this.drop(id)));
  }
}
