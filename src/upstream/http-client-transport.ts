/**
 * The client side of MCP's Streamable HTTP transport, for remote upstream servers, written on node:http.
 *
 * The SDK's client transport goes through `fetch` (undici) and reads SSE through a chain of web streams; in
 * front of a remote server that was about a fifth of the gateway's CPU per call. This one keeps one
 * keep-alive agent per upstream, reads a JSON answer as one body, and parses SSE from the socket's chunks.
 *
 * Behaviour follows the SDK's transport: every message is POSTed (Accept: JSON and SSE); the session id the
 * server gives is sent back, with the negotiated protocol version; a 202 ends a POST; an answer comes as JSON
 * or as an SSE stream that may first carry the server's requests and notifications; after
 * `notifications/initialized` a GET stream is opened for messages tied to no request (405: the server has
 * none) and reopened, twice at most in a row, if it drops. A non-2xx answer fails the send with the status
 * and the body.
 */
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

const GET_RETRIES = 2;
const GET_RETRY_MS = 1000;

export class NodeStreamableClientTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  sessionId?: string;
  private protocolVersion: string | undefined;
  private readonly agent: HttpAgent;
  private readonly secure: boolean;
  private readonly open = new Set<ClientRequest>();
  private getRetries = 0;
  private closed = false;

  constructor(
    private readonly url: URL,
    private readonly headers: Record<string, string> = {},
  ) {
    this.secure = url.protocol === 'https:';
    this.agent = this.secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  }

  async start(): Promise<void> {
    // Nothing to open before the first message.
  }

  setProtocolVersion(version: string): void {
    this.protocolVersion = version;
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) throw new Error('the upstream transport is closed');
    const res = await this.exchange('POST', JSON.stringify(message), 'application/json, text/event-stream');
    const session = res.headers['mcp-session-id'];
    if (typeof session === 'string') this.sessionId = session;
    const status = res.statusCode ?? 0;
    if (status === 202 || status === 204) {
      res.resume();
      if ('method' in message && message.method === 'notifications/initialized') this.openGetStream();
      return;
    }
    if (status < 200 || status >= 300) {
      const text = await readText(res).catch(() => '');
      const error = new Error(`Error POSTing to endpoint (HTTP ${status}): ${text}`);
      this.onerror?.(error);
      throw error;
    }
    const type = String(res.headers['content-type'] ?? '').toLowerCase();
    if (type.startsWith('text/event-stream')) {
      this.readEvents(res);
      return;
    }
    if (type.startsWith('application/json')) {
      const text = await readText(res);
      if (!text) return;
      const parsed: unknown = JSON.parse(text);
      for (const item of Array.isArray(parsed) ? (parsed as unknown[]) : [parsed]) this.deliver(item);
      return;
    }
    res.resume();
    throw new Error(`Unexpected content type from the upstream: ${type || '(none)'}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const req of this.open) req.destroy();
    this.open.clear();
    this.agent.destroy();
    this.onclose?.();
  }

  /** Sends one request; resolves with the response once its headers are in. */
  private exchange(
    method: 'POST' | 'GET',
    body: string | undefined,
    accept: string,
  ): Promise<IncomingMessage> {
    const headers: Record<string, string> = { ...this.headers, accept };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    if (this.sessionId) headers['mcp-session-id'] = this.sessionId;
    if (this.protocolVersion) headers['mcp-protocol-version'] = this.protocolVersion;
    const send = this.secure ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(this.url, { method, headers, agent: this.agent }, (res) => {
        res.once('close', () => this.open.delete(req));
        resolve(res);
      });
      this.open.add(req);
      req.once('error', (error) => {
        this.open.delete(req);
        reject(error);
      });
      req.end(body);
    });
  }

  /** Parses an SSE body as it arrives: each `message` event's data is one JSON-RPC message. */
  private readEvents(res: IncomingMessage, onEnd?: () => void): void {
    res.setEncoding('utf8');
    let buffer = '';
    let data: string[] = [];
    let event = '';
    const dispatch = (): void => {
      if (data.length > 0 && (event === '' || event === 'message')) {
        try {
          this.deliver(JSON.parse(data.join('\n')));
        } catch (error) {
          this.onerror?.(new Error(`unreadable SSE event from the upstream: ${(error as Error).message}`));
        }
      }
      data = [];
      event = '';
    };
    res.on('data', (chunk: string) => {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(buffer.startsWith('\r\n', newline) ? newline + 2 : newline + 1);
        if (line === '') dispatch();
        else if (line.startsWith(':')) continue;
        else {
          const colon = line.indexOf(':');
          const field = colon === -1 ? line : line.slice(0, colon);
          let value = colon === -1 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data') data.push(value);
          else if (field === 'event') event = value;
        }
      }
    });
    res.once('end', () => {
      dispatch();
      onEnd?.();
    });
    res.once('error', (error) => this.onerror?.(error));
  }

  private deliver(value: unknown): void {
    const parsed = JSONRPCMessageSchema.safeParse(value);
    if (!parsed.success) {
      this.onerror?.(new Error('the upstream sent a message that is not JSON-RPC'));
      return;
    }
    this.onmessage?.(parsed.data);
  }

  /** The stream for messages tied to no request; reopened after a drop, at most GET_RETRIES times in a row. */
  private openGetStream(): void {
    if (this.closed) return;
    this.exchange('GET', undefined, 'text/event-stream')
      .then((res) => {
        const status = res.statusCode ?? 0;
        if (status === 405 || status < 200 || status >= 300) {
          res.resume(); // the server offers no such stream
          return;
        }
        this.getRetries = 0;
        this.readEvents(res, () => this.retryGetStream());
      })
      .catch(() => this.retryGetStream());
  }

  private retryGetStream(): void {
    if (this.closed || this.getRetries >= GET_RETRIES) return;
    this.getRetries += 1;
    setTimeout(() => this.openGetStream(), GET_RETRY_MS).unref();
  }
}

function readText(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk: Buffer) => chunks.push(chunk));
    res.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.once('error', reject);
  });
}
