/**
 * A local stand-in for Slack's Web API (pointed at with SLACK_API_URL) that records every call, answers like
 * Slack does, and can be told to fail (500, 429 with Retry-After, platform errors) for the next calls of a
 * method. Plus helpers that post correctly (or incorrectly) signed interaction payloads to /slack/events.
 */
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';

export interface SlackCall {
  method: string;
  /** Form or JSON fields; JSON-looking values (blocks, view) are parsed. */
  body: Record<string, unknown>;
  token: string | undefined;
  at: number;
  /** The HTTP status this fake answered with (scripted failures included). */
  status: number;
}

export interface ScriptedReply {
  status: number;
  body?: Record<string, unknown>;
  headers?: Record<string, string>;
  /** Answer only after this long (a Slack that hangs). */
  delayMs?: number;
}

export interface FakeSlack {
  /** Base URL for SLACK_API_URL, ending in /api/. */
  apiUrl: string;
  calls: SlackCall[];
  /** Answers the next calls of `method` with these replies, in order, before answering normally again. */
  failNext(method: string, replies: ScriptedReply[]): void;
  /**
   * Members of user groups (usergroups.users.list) and emails of users (users.info). A user with no entry in
   * `emails` has the profile email `<id in lower case>@example.com` (Slack shows every member's email to an
   * app with the users:read.email scope); script users.info with failNext for one without.
   */
  groups: Map<string, string[]>;
  emails: Map<string, string>;
  callsOf(method: string): SlackCall[];
  waitFor(method: string, predicate?: (call: SlackCall) => boolean, timeoutMs?: number): Promise<SlackCall>;
  /**
   * Socket Mode: delivers an interaction envelope to the connected app (apps.connections.open hands out
   * this server's WebSocket URL) and resolves with the app's acknowledgement.
   */
  sendOverSocket(payload: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

function parseFields(raw: string, contentType: string | undefined): Record<string, unknown> {
  if (contentType?.includes('application/json')) {
    try {
      return JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return {};
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(raw)) {
    if (/^[[{]/.test(value)) {
      try {
        out[key] = JSON.parse(value);
        continue;
      } catch {
        // not JSON: keep the text
      }
    }
    out[key] = value;
  }
  return out;
}

/** The profile email the fake gives a user it has no email for. */
export const defaultEmail = (userId: string): string => `${userId.toLowerCase()}@example.com`;

export async function startFakeSlack(): Promise<FakeSlack> {
  const calls: SlackCall[] = [];
  const scripted = new Map<string, ScriptedReply[]>();
  const groups = new Map<string, string[]>();
  const emails = new Map<string, string>();
  const waiters = new Set<() => void>();
  let ts = 1_700_000_000;

  const normal = (method: string, body: Record<string, unknown>): Record<string, unknown> => {
    switch (method) {
      case 'chat.postMessage':
        ts += 1;
        return { ok: true, channel: body.channel, ts: `${ts}.000100`, message: { text: body.text } };
      case 'chat.update':
        return { ok: true, channel: body.channel, ts: body.ts };
      case 'chat.postEphemeral':
        return { ok: true, message_ts: `${ts}.000200` };
      case 'views.open':
        return { ok: true, view: { id: 'V123' } };
      case 'usergroups.users.list':
        return { ok: true, users: groups.get(String(body.usergroup)) ?? [] };
      case 'users.info': {
        const email = emails.get(String(body.user)) ?? defaultEmail(String(body.user));
        return { ok: true, user: { id: body.user, profile: { email } } };
      }
      case 'apps.connections.open':
        return { ok: true, url: `ws://127.0.0.1:${port}/socket` };
      case 'auth.test':
        return { ok: true, user_id: 'UBOT', bot_id: 'BBOT', team_id: 'T1' };
      default:
        return { ok: true };
    }
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const method = (req.url ?? '').replace(/^\/api\//, '').split('?')[0] ?? '';
      const body = parseFields(Buffer.concat(chunks).toString('utf8'), req.headers['content-type']);
      const auth = req.headers.authorization;
      const queue = scripted.get(method);
      const reply = queue?.shift() ?? { status: 200, body: normal(method, body) };
      calls.push({
        method,
        body,
        token: auth?.replace(/^Bearer /, ''),
        at: Date.now(),
        status: reply.status,
      });
      for (const wake of [...waiters]) wake();
      const answer = (): void => {
        if (res.destroyed) return;
        res.writeHead(reply.status, { 'content-type': 'application/json', ...(reply.headers ?? {}) });
        res.end(JSON.stringify(reply.body ?? { ok: false, error: 'scripted_failure' }));
      };
      if (reply.delayMs) setTimeout(answer, reply.delayMs).unref();
      else answer();
    });
  });
  // Socket Mode: the app connects here after apps.connections.open; Slack greets with "hello".
  const sockets = new WebSocketServer({ server, path: '/socket' });
  const acks = new Map<string, (ack: Record<string, unknown>) => void>();
  let socket: WebSocket | undefined;
  const socketReady: { wake?: () => void } = {};
  sockets.on('connection', (ws) => {
    socket = ws;
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as Record<string, unknown>;
      const ack = acks.get(String(message.envelope_id));
      if (ack) ack(message);
    });
    ws.send(
      JSON.stringify({
        type: 'hello',
        num_connections: 1,
        connection_info: { app_id: 'A1' },
        debug_info: { host: 'fake' },
      }),
    );
    socketReady.wake?.();
  });
  let envelopes = 0;

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const callsOf = (method: string): SlackCall[] => calls.filter((c) => c.method === method);
  return {
    apiUrl: `http://127.0.0.1:${port}/api/`,
    calls,
    groups,
    emails,
    failNext: (method, replies) => scripted.set(method, [...(scripted.get(method) ?? []), ...replies]),
    callsOf,
    waitFor: (method, predicate = () => true, timeoutMs = 10_000) =>
      new Promise<SlackCall>((resolve, reject) => {
        const check = (): boolean => {
          const found = callsOf(method).find(predicate);
          if (!found) return false;
          cleanup();
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(
              `no ${method} call matching within ${timeoutMs} ms; calls so far: ${calls.map((c) => c.method).join(', ')}`,
            ),
          );
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(wake);
        };
        const wake = (): void => void check();
        waiters.add(wake);
        check();
      }),
    sendOverSocket: async (payload, timeoutMs = 10_000) => {
      if (!socket) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no Socket Mode connection')), timeoutMs);
          socketReady.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      envelopes += 1;
      const id = `envelope-${envelopes}`;
      const acked = new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ack for ${id}`)), timeoutMs);
        acks.set(id, (ack) => {
          clearTimeout(timer);
          resolve(ack);
        });
      });
      socket?.send(
        JSON.stringify({ envelope_id: id, type: 'interactive', payload, accepts_response_payload: false }),
      );
      return acked;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of sockets.clients) client.terminate();
        sockets.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface SlackUser {
  id: string;
  username: string;
}

/** A block_actions payload for an Approve or Reject click on the approval message. */
export function clickPayload(
  action: 'countersign_approve' | 'countersign_reject',
  approvalId: string,
  user: SlackUser,
  channel = 'C0APPROVALS',
): Record<string, unknown> {
  return {
    type: 'block_actions',
    team: { id: 'T1', domain: 'acme' },
    user: { id: user.id, username: user.username, name: user.username, team_id: 'T1' },
    api_app_id: 'A1',
    token: 'legacy-verification-token',
    container: { type: 'message', message_ts: '1700000001.000100', channel_id: channel, is_ephemeral: false },
    trigger_id: `trigger-${Math.random().toString(36).slice(2)}`,
    channel: { id: channel, name: 'approvals' },
    message: { ts: '1700000001.000100', text: 'Approval needed' },
    response_url: 'http://127.0.0.1:9/response',
    actions: [
      {
        action_id: action,
        block_id: 'countersign_decision',
        text: { type: 'plain_text', text: action === 'countersign_approve' ? 'Approve' : 'Reject' },
        value: approvalId,
        type: 'button',
        action_ts: String(Date.now() / 1000),
      },
    ],
  };
}

/** A view_submission payload for the reject-reason modal. */
export function rejectSubmission(
  approvalId: string,
  user: SlackUser,
  reason: string,
  channel = 'C0APPROVALS',
): Record<string, unknown> {
  return {
    type: 'view_submission',
    team: { id: 'T1', domain: 'acme' },
    user: { id: user.id, username: user.username, name: user.username, team_id: 'T1' },
    api_app_id: 'A1',
    token: 'legacy-verification-token',
    trigger_id: 'trigger-modal',
    view: {
      id: 'V123',
      type: 'modal',
      callback_id: 'countersign_reject_reason',
      private_metadata: JSON.stringify({ id: approvalId, channel }),
      state: { values: { reason: { reason_input: { type: 'plain_text_input', value: reason } } } },
    },
  };
}

export function slackSignature(secret: string, timestamp: string, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

/**
 * Posts an interaction payload to the gateway's /slack/events as Slack does (form-encoded `payload=`), signed
 * with `secret`. `timestamp` (seconds) and `signature` can be overridden to forge requests.
 */
export async function postInteraction(
  gatewayUrl: string,
  secret: string,
  payload: Record<string, unknown> | string,
  options: { timestamp?: number; signature?: string; rawBody?: string } = {},
): Promise<Response> {
  const body =
    options.rawBody ??
    `payload=${encodeURIComponent(typeof payload === 'string' ? payload : JSON.stringify(payload))}`;
  const timestamp = String(options.timestamp ?? Math.floor(Date.now() / 1000));
  return fetch(`${gatewayUrl}/slack/events`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-slack-request-timestamp': timestamp,
      'x-slack-signature': options.signature ?? slackSignature(secret, timestamp, body),
    },
    body,
  });
}
