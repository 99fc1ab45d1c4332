/**
 * The JSON-RPC methods that may cross the gateway, in each direction. Anything else is refused where it
 * arrives: an unknown request gets -32601 Method not found, an unknown notification is dropped. Names are
 * matched exactly (case included: `Tools/Call` is not `tools/call`), so no spelling the policy does not see
 * can reach an upstream server.
 *
 * Deliberately absent:
 * - client `notifications/tasks/status`, and server `tasks/get|result|list|cancel` and
 *   `notifications/tasks/status`: the gateway does not offer the client's own task support upstream, and an
 *   upstream's task ids are its own (the gateway gives the client its own tasks, which it answers itself);
 * - every extension or future method: it passes once it is added here, with the reason it is safe.
 */

/** How an allowed method gets to the other side. */
export type Passage =
  /** Walks the policy pipeline (tools): what reaches the upstream is what the policy let through. */
  | 'policed'
  /** Sent on unchanged (routed by name or URI when several servers are aggregated). */
  | 'relayed'
  /** Answered by the gateway itself, for this hop only; never reaches the other side. */
  | 'answered'
  /** Becomes the gateway's own message about its own request (cancellation, progress). */
  | 'translated';

export interface AllowedMethod {
  readonly passage: Passage;
  readonly why: string;
}

const TASKS_WHY = 'the gateway keeps its own tasks (bound to the grant) and answers these from them';
const RESOURCES_WHY = 'reads and subscriptions, not tool calls: the policy covers tools only';

/** The allow-list, by direction. Keep it short; every entry says why it is safe to let through. */
export const ALLOWED_METHODS = {
  /** Requests a client sends to `/mcp`, `/mcp/<server>` or `countersign stdio`. */
  clientRequests: {
    initialize: {
      passage: 'answered',
      why: 'opens the downstream session; the gateway initializes each upstream itself',
    },
    ping: { passage: 'answered', why: 'liveness of this hop' },
    'tools/list': { passage: 'policed', why: "filtered by the grant's policy (hidden tools removed)" },
    'tools/call': { passage: 'policed', why: 'the policy pipeline decides, counts, parks and audits it' },
    'tasks/get': { passage: 'answered', why: TASKS_WHY },
    'tasks/result': { passage: 'answered', why: TASKS_WHY },
    'tasks/list': { passage: 'answered', why: TASKS_WHY },
    'tasks/cancel': { passage: 'answered', why: TASKS_WHY },
    'resources/list': { passage: 'relayed', why: RESOURCES_WHY },
    'resources/templates/list': { passage: 'relayed', why: RESOURCES_WHY },
    'resources/read': { passage: 'relayed', why: RESOURCES_WHY },
    'resources/subscribe': { passage: 'relayed', why: RESOURCES_WHY },
    'resources/unsubscribe': { passage: 'relayed', why: RESOURCES_WHY },
    'prompts/list': { passage: 'relayed', why: 'prompt templates are text for the client, not actions' },
    'prompts/get': { passage: 'relayed', why: 'prompt templates are text for the client, not actions' },
    'completion/complete': { passage: 'relayed', why: 'suggests argument values; runs nothing' },
    'logging/setLevel': { passage: 'relayed', why: 'how much log the upstream sends back; runs nothing' },
  },
  /** Notifications a client sends. */
  clientNotifications: {
    'notifications/initialized': {
      passage: 'answered',
      why: "ends this hop's handshake; each upstream had its own",
    },
    'notifications/cancelled': {
      passage: 'translated',
      why: "aborts the client's request; the gateway cancels its own upstream request for it",
    },
    'notifications/progress': {
      passage: 'translated',
      why: 'progress on a request the upstream sent (sampling, elicitation) goes back under its own token',
    },
    'notifications/roots/list_changed': {
      passage: 'relayed',
      why: 'tells every upstream to ask roots/list again (which comes back to this client)',
    },
  },
  /** Requests an upstream server sends back to the client. */
  serverRequests: {
    ping: { passage: 'answered', why: 'liveness of the upstream hop' },
    'sampling/createMessage': { passage: 'relayed', why: "asks this client's model; the client decides" },
    'elicitation/create': { passage: 'relayed', why: "asks this client's user; the user decides" },
    'roots/list': { passage: 'relayed', why: 'the roots this client chose to share' },
  },
  /** Notifications an upstream server sends. */
  serverNotifications: {
    'notifications/cancelled': {
      passage: 'translated',
      why: 'aborts the request it sent; the gateway cancels its relayed copy',
    },
    'notifications/progress': {
      passage: 'translated',
      why: "routed to the call it belongs to, under the client's own progress token",
    },
    'notifications/message': {
      passage: 'relayed',
      why: 'log lines the client asked for with logging/setLevel',
    },
    'notifications/resources/updated': {
      passage: 'relayed',
      why: 'a resource the client subscribed to changed',
    },
    'notifications/resources/list_changed': { passage: 'relayed', why: 'the client lists resources again' },
    'notifications/tools/list_changed': {
      passage: 'relayed',
      why: 'the client lists tools again (through the policy filter); the gateway forgets its cached list',
    },
    'notifications/prompts/list_changed': { passage: 'relayed', why: 'the client lists prompts again' },
    'notifications/elicitation/complete': {
      passage: 'relayed',
      why: 'ends an elicitation the client was shown',
    },
  },
} as const satisfies Record<string, Record<string, AllowedMethod>>;

export type MethodDirection = keyof typeof ALLOWED_METHODS;

/** The entry for `method` in one direction, or undefined: exact, case-sensitive, own keys only. */
export function allowedMethod(direction: MethodDirection, method: string): AllowedMethod | undefined {
  const list: Readonly<Record<string, AllowedMethod>> = ALLOWED_METHODS[direction];
  return Object.hasOwn(list, method) ? list[method] : undefined;
}

/** Whether `method` may cross in that direction. */
export function isAllowedMethod(direction: MethodDirection, method: string): boolean {
  return allowedMethod(direction, method) !== undefined;
}

/**
 * At most `max` characters of `text`; a cut one ends with a marker giving its full length. Used for every
 * client-chosen string that goes into an answer, a log line or an audit event.
 */
export function boundedText(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = `…(${text.length} chars)`;
  const keep = Math.max(0, max - marker.length);
  // (A surrogate pair cut in half becomes U+FFFD when the audit log writes it.)
  return `${text.slice(0, keep)}${marker}`.slice(0, max);
}
