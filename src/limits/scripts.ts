/**
 * Lua scripts for rate-limit counters. Each runs atomically inside Redis, so concurrent calls from
 * any number of gateway processes see one consistent count.
 */

/**
 * reserve — take one unit from every counter, or from none.
 * Guarantee: all counters are checked, then all are incremented, in one atomic step; if any counter is
 * already at its max, nothing changes. A counter's key expires after its window (plus slack).
 *   KEYS[i]      counter key for window i (the key names the window start)
 *   ARGV[2i-1]   max for KEYS[i]
 *   ARGV[2i]     ttl in seconds for KEYS[i]
 * Returns { 0, count_1, ..., count_n } when reserved, or { -1, i, count_i } naming the first full counter.
 */
export const RESERVE_SCRIPT = `
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current >= tonumber(ARGV[2 * i - 1]) then
    return { -1, i, current }
  end
end
local result = { 0 }
for i = 1, #KEYS do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 * i]))
  end
  result[#result + 1] = count
end
return result
`;

/**
 * release — give back one unit taken by reserve, for a call that never reached the upstream server.
 * Guarantee: a counter never goes below zero, and a counter whose window has already expired is not
 * recreated (releasing late is a no-op).
 *   KEYS[i]  counter key reserved earlier
 * Returns the number of counters decremented.
 */
export const RELEASE_SCRIPT = `
local released = 0
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current > 0 then
    redis.call('DECR', KEYS[i])
    released = released + 1
  end
end
return released
`;
