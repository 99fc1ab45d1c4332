/**
 * The server side of MCP's Streamable HTTP transport, written directly on Node's request and response.
 *
 * The SDK's own transport converts every request into a web `Request`, answers with a web `Response` over a
 * `ReadableStream`, and opens an SSE stream for every POST. That costs CPU on each call and memory for every
 * held one. This transport answers a POST with plain JSON when its answers are ready first; it switches
 * the response to an SSE stream as soon as something else must go first (a progress notification, a request
 * back to the client) or when the answer takes longer than `sseAfterMs` (then comment lines keep the
 * connection alive, as the SDK's transport does). Clients accept either form (spec: "the server MUST either
 * return Content-Type: text/event-stream … or Content-Type: application/json").
 *
 * It keeps the SDK transport's checks and errors: Accept and Content-Type (406, 415), JSON-RPC message shape
 * (400, -32700), batch size, protocol version header (400), one GET stream per session (409), 405 for other
 * methods, DELETE ends the session.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  ErrorCode,
  JSONRPCMessageSchema,
  SUPPORTED_PROTOCOL_VERSIONS,
} from '@modelcontextprotocol/sdk/types.js';
import type { JSONRPCMessage, MessageExtraInfo, RequestId } from '@modelcontextprotocol/sdk/types.js';

/** The SDK transport's limit on messages in one POSTed batch. */
export const MAX_BATCH_SIZE = 100;
const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
} as const;

export interface NodeStreamableTransportOptions {
  sessionId: string;
  /** Called on DELETE, before the transport closes. */
  onsessionclosed?: (sessionId: string) => void | Promise<void>;
  /** An answer not ready after this long is streamed (SSE) instead of waited for. Default 1000 ms. */
  sseAfterMs?: number;
  /** Comment lines on open SSE streams, so proxies do not drop quiet ones. Default 15 s. */
  keepAliveMs?: number;
  /** Told of each POST refused for its JSON-RPC content (to audit it); the answer does not wait for it. */
  onrefused?: (refusal: TransportRefusal) => void;
}

/** A POST of this session refused for what it carried (not for its headers). */
export interface TransportRefusal {
  reason: 'batch_too_large' | 'duplicate_request_id' | 'invalid_message';
  /** The first method the body named (a batch's first), or ''. */
  method: string;
  /** What the client was told. */
  message: string;
}

/** One POST that carried requests: its response, in JSON or (once switched) SSE. */
class PostStream {
  private readonly pending: Set<RequestId>;
  private readonly answers: JSONRPCMessage[] = [];
  private sse = false;
  private finished = false;
  private sseTimer: NodeJS.Timeout | undefined;
  private keepAlive: NodeJS.Timeout | undefined;

  constructor(
    private readonly res: ServerResponse,
    /** Every request this POST carried (answered or not). */
    readonly requestIds: readonly RequestId[],
    private readonly batch: boolean,
    private readonly headers: Record<string, string>,
    private readonly keepAliveMs: number,
    sseAfterMs: number,
    private readonly onDone: (stream: PostStream) => void,
  ) {
    this.pending = new Set(requestIds);
    this.sseTimer = setTimeout(() => this.startSse(), sseAfterMs);
    this.sseTimer.unref();
  }

  /** A notification or request related to one of this POST's requests: it needs the stream. */
  write(message: JSONRPCMessage): void {
    if (this.finished) return;
    this.startSse();
    writeEvent(this.res, message);
  }

  /** The answer to one of this POST's requests; the response ends once every request has one. */
  answer(id: RequestId, message: JSONRPCMessage): void {
    if (this.finished || !this.pending.delete(id)) return;
    if (this.sse) writeEvent(this.res, message);
    else this.answers.push(message);
    if (this.pending.size === 0) this.finish();
  }

  /**
   * The client cancelled one of this POST's requests: it gets no answer (spec), so it no longer holds the
   * response open. With nothing left to answer, the response ends (an SSE stream with whatever it carried).
   */
  cancel(id: RequestId): void {
    if (this.finished || !this.pending.delete(id)) return;
    if (this.pending.size > 0) return;
    if (this.answers.length === 0) this.startSse();
    this.finish();
  }

  /** The session closed with requests unanswered: each gets an error instead of a stream that just stops. */
  abandon(reason: string): void {
    for (const id of [...this.pending])
      this.answer(id, {
        jsonrpc: '2.0',
        id,
        error: { code: ErrorCode.ConnectionClosed, message: `Connection closed: ${reason}` },
      });
  }

  /** The client went away: nothing more can be written. Returns the requests that never got their answer. */
  dropped(): RequestId[] {
    if (this.finished) return [];
    this.finished = true;
    this.stopTimers();
    this.onDone(this);
    return [...this.pending];
  }

  private startSse(): void {
    if (this.sse || this.finished) return;
    this.sse = true;
    clearTimeout(this.sseTimer);
    if (!this.res.writable) return;
    this.res.writeHead(200, { ...SSE_HEADERS, ...this.headers });
    this.res.flushHeaders();
    // Answers already in (a batch's quick requests) go first: the stream now carries everything.
    for (const message of this.answers.splice(0)) writeEvent(this.res, message);
    this.keepAlive = setInterval(() => {
      if (this.res.writable) this.res.write(': keepalive\n\n');
    }, this.keepAliveMs);
    this.keepAlive.unref();
  }

  private finish(): void {
    this.finished = true;
    this.stopTimers();
    try {
      if (this.sse || this.res.headersSent) this.res.end();
      else {
        const body = JSON.stringify(this.batch ? this.answers : this.answers[0]);
        this.res.writeHead(200, { 'Content-Type': 'application/json', ...this.headers });
        this.res.end(body);
      }
    } finally {
      this.onDone(this);
    }
  }

  private stopTimers(): void {
    clearTimeout(this.sseTimer);
    clearInterval(this.keepAlive);
  }
}

function writeEvent(res: ServerResponse, message: JSONRPCMessage): void {
  if (res.writable) res.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
}

function errorResponse(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers = {},
): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

/** The method of the first message that names one (only a string counts), or ''. */
function firstMethod(raw: readonly unknown[]): string {
  for (const one of raw) {
    const method = typeof one === 'object' && one !== null ? (one as { method?: unknown }).method : undefined;
    if (typeof method === 'string') return method;
  }
  return '';
}

function isJsonContentType(value: string | undefined): boolean {
  return (value ?? '').split(';', 1)[0]?.trim().toLowerCase() === 'application/json';
}

function isRequest(message: JSONRPCMessage): message is JSONRPCMessage & { id: RequestId; method: string } {
  return 'method' in message && 'id' in message;
}

function isResponse(message: JSONRPCMessage): message is JSONRPCMessage & { id: RequestId } {
  return ('result' in message || 'error' in message) && 'id' in message && message.id !== undefined;
}

export class NodeStreamableTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage, extra?: MessageExtraInfo) => void;
  readonly sessionId: string;
  private readonly byRequest = new Map<RequestId, PostStream>();
  private standalone: ServerResponse | undefined;
  private standaloneKeepAlive: NodeJS.Timeout | undefined;
  private readonly headers: Record<string, string>;
  private readonly sseAfterMs: number;
  private readonly keepAliveMs: number;
  private initialized = false;
  private closed = false;

  constructor(private readonly options: NodeStreamableTransportOptions) {
    this.sessionId = options.sessionId;
    this.headers = { 'mcp-session-id': options.sessionId };
    this.sseAfterMs = options.sseAfterMs ?? 1000;
    this.keepAliveMs = options.keepAliveMs ?? 15_000;
  }

  async start(): Promise<void> {
    // Nothing to open: requests arrive through handleRequest.
  }

  /** Serves one HTTP request of this session; `body` is the parsed JSON of a POST. */
  async handleRequest(req: IncomingMessage, res: ServerResponse, body?: unknown): Promise<void> {
    if (this.closed) return errorResponse(res, 404, -32001, 'Session not found');
    switch (req.method) {
      case 'POST':
        return this.post(req, res, body);
      case 'GET':
        return this.get(req, res);
      case 'DELETE':
        return this.delete(req, res);
      default:
        return errorResponse(res, 405, -32000, 'Method not allowed.', { Allow: 'GET, POST, DELETE' });
    }
  }

  private post(req: IncomingMessage, res: ServerResponse, body: unknown): void {
    const accept = req.headers.accept ?? '';
    if (!accept.includes('application/json') || !accept.includes('text/event-stream'))
      return errorResponse(
        res,
        406,
        -32000,
        'Not Acceptable: Client must accept both application/json and text/event-stream',
      );
    if (!isJsonContentType(req.headers['content-type']))
      return errorResponse(res, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
    const raw = Array.isArray(body) ? (body as unknown[]) : [body];
    if (raw.length > MAX_BATCH_SIZE)
      return this.refuse(res, -32600, raw, {
        reason: 'batch_too_large',
        message: `Invalid Request: Batch must not exceed ${MAX_BATCH_SIZE} messages`,
      });
    const messages: JSONRPCMessage[] = [];
    for (const one of raw) {
      const parsed = JSONRPCMessageSchema.safeParse(one);
      if (!parsed.success)
        return this.refuse(res, -32700, raw, {
          reason: 'invalid_message',
          message: 'Parse error: Invalid JSON-RPC message',
        });
      messages.push(parsed.data);
    }
    const initializing = messages.some((m) => 'method' in m && m.method === 'initialize');
    if (initializing) {
      if (this.initialized)
        return errorResponse(res, 400, -32600, 'Invalid Request: Server already initialized');
      if (messages.length > 1)
        return errorResponse(res, 400, -32600, 'Invalid Request: Only one initialization request is allowed');
      this.initialized = true;
    } else if (this.badProtocolVersion(req, res)) return;

    const requestIds = messages.filter(isRequest).map((m) => m.id);
    // An id still in flight (or twice in one batch) would take another request's answer: refused whole.
    const seen = new Set<RequestId>();
    for (const id of requestIds) {
      if (this.byRequest.has(id) || seen.has(id))
        return this.refuse(res, -32600, raw, {
          reason: 'duplicate_request_id',
          message: `Invalid Request: request id ${JSON.stringify(id).slice(0, 100)} is already in use by an unanswered request of this session`,
        });
      seen.add(id);
    }
    if (requestIds.length === 0) {
      for (const message of messages) this.noteCancellation(message);
      res.writeHead(202);
      res.end();
      for (const message of messages) this.onmessage?.(message);
      return;
    }
    const stream = new PostStream(
      res,
      requestIds,
      Array.isArray(body),
      this.headers,
      this.keepAliveMs,
      this.sseAfterMs,
      (done) => {
        for (const id of done.requestIds) if (this.byRequest.get(id) === done) this.byRequest.delete(id);
      },
    );
    for (const id of requestIds) this.byRequest.set(id, stream);
    // After the batch's own ids are registered: a batch may cancel a request it carries itself.
    for (const message of messages) this.noteCancellation(message);
    res.once('close', () => {
      if (res.writableFinished) return;
      // The client went away before its answer was written: the answer could never reach it, so its requests
      // are cancelled as if it had said so. A call held for approval then stays parked, and its result is kept
      // for the retry instead of being handed to a dead connection.
      for (const requestId of stream.dropped())
        this.onmessage?.({
          jsonrpc: '2.0',
          method: 'notifications/cancelled',
          params: { requestId, reason: 'the client disconnected before the answer was written' },
        });
    });
    for (const message of messages) this.onmessage?.(message);
  }

  /** Answers a refused POST with 400 and tells onrefused (the answer never waits for, or fails on, it). */
  private refuse(
    res: ServerResponse,
    code: number,
    raw: readonly unknown[],
    refusal: Omit<TransportRefusal, 'method'>,
  ): void {
    errorResponse(res, 400, code, refusal.message);
    try {
      this.options.onrefused?.({ ...refusal, method: firstMethod(raw) });
    } catch {
      // auditing is best effort here: the refusal stands either way
    }
  }

  /** A cancellation of an open request releases that request's place in its response. */
  private noteCancellation(message: JSONRPCMessage): void {
    if (!('method' in message) || message.method !== 'notifications/cancelled' || 'id' in message) return;
    const requestId = (message.params as { requestId?: unknown } | undefined)?.requestId;
    if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
    const stream = this.byRequest.get(requestId);
    if (!stream) return;
    this.byRequest.delete(requestId);
    stream.cancel(requestId);
  }

  private get(req: IncomingMessage, res: ServerResponse): void {
    if (!(req.headers.accept ?? '').includes('text/event-stream'))
      return errorResponse(res, 406, -32000, 'Not Acceptable: Client must accept text/event-stream');
    if (this.badProtocolVersion(req, res)) return;
    if (this.standalone)
      return errorResponse(res, 409, -32000, 'Conflict: Only one SSE stream is allowed per session');
    this.standalone = res;
    res.writeHead(200, { ...SSE_HEADERS, ...this.headers });
    res.flushHeaders();
    this.standaloneKeepAlive = setInterval(() => {
      if (res.writable) res.write(': keepalive\n\n');
    }, this.keepAliveMs);
    this.standaloneKeepAlive.unref();
    res.once('close', () => {
      if (this.standalone !== res) return;
      clearInterval(this.standaloneKeepAlive);
      this.standalone = undefined;
    });
  }

  private async delete(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.badProtocolVersion(req, res)) return;
    try {
      await this.options.onsessionclosed?.(this.sessionId);
      res.writeHead(200);
      res.end();
    } finally {
      await this.close();
    }
  }

  private badProtocolVersion(req: IncomingMessage, res: ServerResponse): boolean {
    const version = req.headers['mcp-protocol-version'];
    if (
      version === undefined ||
      (typeof version === 'string' && SUPPORTED_PROTOCOL_VERSIONS.includes(version))
    )
      return false;
    errorResponse(
      res,
      400,
      -32000,
      `Bad Request: Unsupported protocol version: ${String(version)} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`,
    );
    return true;
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if (isResponse(message)) {
      const stream = this.byRequest.get(message.id);
      if (!stream) throw new Error(`No connection established for request ID: ${String(message.id)}`);
      stream.answer(message.id, message);
      return;
    }
    const related = options?.relatedRequestId;
    const stream = related === undefined ? undefined : this.byRequest.get(related);
    if (stream) {
      stream.write(message);
      return;
    }
    // Not tied to an open request: the session's GET stream, if the client opened one. Without it a
    // notification is dropped (as with the SDK's transport), and a request fails at once rather than waiting
    // for an answer that cannot come.
    if (this.standalone) writeEvent(this.standalone, message);
    else if (isRequest(message))
      throw new Error(
        `No connection to send ${message.method} on: its request was answered and the client has no GET stream open`,
      );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const open = new Set(this.byRequest.values());
    this.byRequest.clear();
    for (const stream of open) {
      try {
        stream.abandon('the session was closed before this request was answered');
      } catch {
        // a response that cannot be written any more: nothing else to tell that client
      }
    }
    clearInterval(this.standaloneKeepAlive);
    this.standalone?.end();
    this.standalone = undefined;
    this.onclose?.();
  }
}
