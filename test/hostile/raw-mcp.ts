/**
 * Raw HTTP access to the gateway's MCP endpoints for hostile-input tests: bodies are sent as given
 * (no client library repairs them), answers are read as the wire carries them (JSON or SSE), and
 * `answerProblem` says what, if anything, is wrong with an answer.
 */
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';

export const MCP_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
};

/** A request that has not been answered after this long is a finding, not a slow machine. */
export const ANSWER_TIMEOUT_MS = 15_000;

export interface RawAnswer {
  status: number;
  contentType: string;
  text: string;
  /** Every JSON value the body carried: the JSON body itself, or each SSE `data:` payload. */
  messages: unknown[];
  /** Set when the body was meant to be JSON but is not. */
  unparsable?: string;
  sessionId?: string;
}

export type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The JSON payloads of an SSE body (comments and empty priming events skipped). */
export function sseData(text: string): string[] {
  const payloads: string[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, ''));
    if (data.length > 0 && data.join('') !== '') payloads.push(data.join('\n'));
  }
  return payloads;
}

/** POSTs `body` exactly as given. */
export async function postRaw(
  url: string,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawAnswer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...MCP_HEADERS, ...headers },
    body,
    signal: AbortSignal.timeout(ANSWER_TIMEOUT_MS),
  });
  const text = await res.text();
  const contentType = res.headers.get('content-type') ?? '';
  const answer: RawAnswer = { status: res.status, contentType, text, messages: [] };
  const sessionId = res.headers.get('mcp-session-id');
  if (sessionId) answer.sessionId = sessionId;
  const payloads = contentType.includes('text/event-stream') ? sseData(text) : text === '' ? [] : [text];
  for (const payload of payloads) {
    try {
      answer.messages.push(JSON.parse(payload) as unknown);
    } catch (error) {
      answer.unparsable = `${(error as Error).message}: ${payload.slice(0, 200)}`;
    }
  }
  return answer;
}

function errorProblem(error: unknown): string | undefined {
  if (!isObject(error)) return 'error is not an object';
  if (typeof error.code !== 'number' || !Number.isInteger(error.code)) return 'error.code is not an integer';
  if (typeof error.message !== 'string' || error.message === '')
    return 'error.message is not a non-empty string';
  return undefined;
}

/** What is wrong with one JSON-RPC response, or undefined when it is well formed. */
export function responseProblem(message: unknown): string | undefined {
  if (!isObject(message)) return 'not an object';
  if (message.jsonrpc !== '2.0') return 'jsonrpc is not "2.0"';
  const hasResult = Object.hasOwn(message, 'result');
  const hasError = Object.hasOwn(message, 'error');
  if (hasResult === hasError) return 'needs exactly one of result and error';
  if (hasResult && !isObject(message.result)) return 'result is not an object';
  return hasError ? errorProblem(message.error) : undefined;
}

/** The ids of the requests (not notifications or responses) in a body, or undefined if it is not JSON. */
export function requestIds(body: string): unknown[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  const messages = Array.isArray(parsed) ? parsed : [parsed];
  return messages
    .filter((m) => isObject(m) && typeof m.method === 'string' && Object.hasOwn(m, 'id'))
    .map((m) => (m as JsonObject).id);
}

/**
 * The contract every answer to hostile input must keep, or a description of how it broke it:
 * never 5xx; a 4xx carries a JSON-RPC error; a 202 carries nothing; a 200 carries well-formed
 * JSON-RPC responses, exactly one for each request id sent (notifications from the server allowed).
 */
export function answerProblem(answer: RawAnswer, sentBody: string): string | undefined {
  const where = `HTTP ${answer.status} ${answer.contentType} ${answer.text.slice(0, 300)}`;
  if (answer.status >= 500) return `5xx answer: ${where}`;
  if (answer.unparsable) return `unparsable body (${answer.unparsable}): ${where}`;
  if (answer.status >= 400) {
    const [only, ...rest] = answer.messages;
    if (rest.length > 0 || !isObject(only)) return `4xx without one JSON-RPC error object: ${where}`;
    if (only.jsonrpc !== '2.0' || !Object.hasOwn(only, 'error'))
      return `4xx body is not a JSON-RPC error: ${where}`;
    const problem = errorProblem(only.error);
    return problem ? `4xx ${problem}: ${where}` : undefined;
  }
  const ids = requestIds(sentBody);
  if (answer.status === 202) {
    if (answer.text !== '') return `202 with a body: ${where}`;
    return ids && ids.length > 0 ? `202 (nothing to answer) to a body with requests: ${where}` : undefined;
  }
  if (answer.status !== 200) return `unexpected status: ${where}`;
  if (!ids || ids.length === 0) return `200 to a body without requests: ${where}`;
  const flat = answer.messages.flatMap((m) => (Array.isArray(m) ? (m as unknown[]) : [m]));
  const responses = flat.filter((m) => !(isObject(m) && typeof m.method === 'string'));
  for (const response of responses) {
    const problem = responseProblem(response);
    if (problem) return `malformed response (${problem}): ${where}`;
  }
  const answered = responses.map((r) => JSON.stringify((r as JsonObject).id));
  const expected = ids.map((id) => JSON.stringify(id));
  for (const id of answered)
    if (!expected.includes(id)) return `response for id ${id} that was not sent: ${where}`;
  for (const id of new Set(expected)) if (!answered.includes(id)) return `no response for id ${id}: ${where}`;
  return undefined;
}

export interface RawSession {
  url: string;
  headers: Record<string, string>;
  id: string;
  post(body: string | Uint8Array, extraHeaders?: Record<string, string>): Promise<RawAnswer>;
  close(): Promise<void>;
}

/** initialize + notifications/initialized by hand; later posts carry the session id and protocol version. */
export async function openRawSession(
  url: string,
  extraHeaders: Record<string, string> = {},
): Promise<RawSession> {
  const init = await postRaw(
    url,
    JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: {
        protocolVersion: LATEST_PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: 'hostile', version: '1' },
      },
    }),
    extraHeaders,
  );
  const id = init.sessionId;
  if (init.status !== 200 || !id)
    throw new Error(`initialize failed: HTTP ${init.status} ${init.text.slice(0, 300)}`);
  const headers = { ...extraHeaders, 'mcp-session-id': id, 'mcp-protocol-version': LATEST_PROTOCOL_VERSION };
  const initialized = await postRaw(
    url,
    JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    headers,
  );
  if (initialized.status !== 202) throw new Error(`notifications/initialized got HTTP ${initialized.status}`);
  return {
    url,
    headers,
    id,
    post: (body, more = {}) => postRaw(url, body, { ...headers, ...more }),
    close: async () => {
      const res = await fetch(url, { method: 'DELETE', headers: { ...MCP_HEADERS, ...headers } });
      await res.text();
    },
  };
}

/** A tools/call request body. */
export function toolCallBody(id: number, name: string, args: unknown = {}): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
}
