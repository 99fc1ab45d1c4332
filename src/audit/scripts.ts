/**
 * The one Lua script that writes the audit stream. It runs atomically inside Redis, so any number of
 * gateway processes sharing a Redis extend one hash chain without ever forking it.
 */

/**
 * append — add a batch of already-hashed events to the chain, or nothing.
 * Guarantee: the batch is written only if the chain's head is still the hash the client chained the batch
 * onto; then each event is XADDed in order with its hash and its predecessor's hash, and the head moves
 * with each XADD (so even an error half-way leaves stream and head consistent). If another process moved
 * the head first, nothing is written and the current head is returned for the client to rehash and retry.
 *   KEYS[1]       the audit stream
 *   KEYS[2]       the head: hash of the stream's last event (absent = empty trail = GENESIS)
 *   ARGV[1]       GENESIS (64 zeros)
 *   ARGV[2]       the head hash the batch was chained onto
 *   ARGV[2i+1]    canonical JSON of event i (i = 1..n)
 *   ARGV[2i+2]    hash of event i
 * Returns { 0, new head } when written, { -1, current head } when the head moved,
 * or { -2, stream length } when the head is missing but the stream is not empty (refused: chaining onto
 * GENESIS would hide whatever removed the head).
 */
export const APPEND_SCRIPT = `
local head = redis.call('GET', KEYS[2])
if not head then
  local length = redis.call('XLEN', KEYS[1])
  if length > 0 then
    return { -2, tostring(length) }
  end
  head = ARGV[1]
end
if head ~= ARGV[2] then
  return { -1, head }
end
local prev = head
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[i], 'h', ARGV[i + 1], 'p', prev)
  prev = ARGV[i + 1]
  redis.call('SET', KEYS[2], prev)
end
return { 0, prev }
`;

export const APPEND_OK = 0;
export const APPEND_HEAD_MOVED = -1;
export const APPEND_HEAD_MISSING = -2;

/** Turns a negative code of the append script into a sentence for the operator. */
export function appendFailureMessage(
  code: number,
  detail: string,
  keys: { stream: string; head: string },
): string {
  switch (code) {
    case APPEND_HEAD_MOVED:
      return `another process kept appending to ${keys.stream} (head now ${detail}); gave up after repeated retries`;
    case APPEND_HEAD_MISSING:
      return (
        `the audit head key ${keys.head} is missing but ${keys.stream} holds ${detail} events, so the chain cannot be ` +
        `extended safely; run \`countersign audit verify\`, then restore it with SET ${keys.head} <h of the last entry>`
      );
    default:
      return `the audit append script returned unknown code ${code} (${detail})`;
  }
}
