/**
 * Lua scripts for approvals. Each is one atomic state change, so any number of gateway processes
 * (and any number of simultaneous clicks) see one consistent approval. Negative returns are codes that
 * `store.ts` turns into results; a script never half-applies.
 *
 * Record: a hash at `<p>approval:<id>` with `status` pending | approved | rejected | expired | cancelled and
 * `execution` none | running | done | interrupted. Indexes: `<p>approvals:pending` and
 * `<p>approvals:pending:<grant>` (sorted by expiry), `<p>approvals:all` (by creation), a binding key
 * from the exact call (server, tool, grant, argument hash) to its latest approval, `<p>approvals:running`
 * (executions in progress, to find the ones whose process died) and `<p>approvals:awaiting-execution`
 * (approved calls parked as MCP tasks, which a background worker runs).
 */

/**
 * create — park a call for approval, unless the grant already has `max_pending` approvals pending or the
 * identical call already has a pending approval (then that one is returned: one call, one approval).
 *   KEYS[1] record  KEYS[2] pending index  KEYS[3] grant's pending index  KEYS[4] binding  KEYS[5] all index
 *   KEYS[6] the call's fixed parts (JSON string)
 *   ARGV[1] now (ms)  ARGV[2] max pending  ARGV[3] expires at (ms)  ARGV[4] id  ARGV[5] keep for (s) after expiry
 *   ARGV[6] the call parts JSON  ARGV[7..] field, value pairs of the record
 * Returns { 0, id } created, { 1, existing id } already pending, { -1, pending count } too many pending.
 */
export const CREATE_SCRIPT = `
local now = tonumber(ARGV[1])
local bound = redis.call('GET', KEYS[4])
if bound then
  local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[4])
  if redis.call('HGET', prefix .. bound, 'status') == 'pending' then
    return { 1, bound }
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local pending = redis.call('ZCARD', KEYS[3])
if pending >= tonumber(ARGV[2]) then
  return { -1, pending }
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
local expiresAt = tonumber(ARGV[3])
local ttl = math.ceil((expiresAt - now) / 1000) + tonumber(ARGV[5])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[6], ARGV[6], 'EX', ttl)
redis.call('ZADD', KEYS[2], expiresAt, ARGV[4])
redis.call('ZADD', KEYS[3], expiresAt, ARGV[4])
redis.call('ZADD', KEYS[5], now, ARGV[4])
redis.call('SET', KEYS[4], ARGV[4], 'EX', ttl)
return { 0, ARGV[4] }
`;

/**
 * transition — the one place an approval's status changes: pending → approved | rejected | expired | cancelled.
 * Guarantee: exactly one caller moves a pending approval to a final status; everyone after it is told who
 * decided and when. A click that arrives after the expiry time expires the approval instead of deciding it.
 * With a quorum, each distinct approver counts once and the approval is approved by the vote that reaches it.
 *   KEYS[1] record  KEYS[2] approvers set  KEYS[3] pending index  KEYS[4] grant's pending index
 *   KEYS[5] awaiting-execution index (a task's approved call is queued there for the background worker)
 *   KEYS[6] binding (a task reports a rejection, expiry or cancellation itself: the binding ends with it)
 *   ARGV[1] verdict: approve | reject | cancel | expire   ARGV[2] reviewer id  ARGV[3] reviewer name
 *   ARGV[4] reason (may be empty)  ARGV[5] now (ms)  ARGV[6] events channel  ARGV[7] id
 *   ARGV[8] voter key: the person an approve vote counts for (so one person counts once whatever identifier
 *           they voted under); defaults to ARGV[2]
 *   ARGV[9..] more tokens of the voter ("id:<identifier>", lower case): every identifier that is, or looks like,
 *           theirs; a later voter sharing any token is taken for the same person
 * Returns
 *   { 0, status }                         decided now (approved, rejected, expired or cancelled)
 *   { 1, votes }                          approval vote counted, quorum not reached yet
 *   { -1 }                                no such approval
 *   { -2, status, by, name, at }          already decided (by whom, when)
 *   { -3, votes }                         this reviewer has already approved
 *   { -4 }                                expire asked before the expiry time
 *   { 2, 'expired' }                      a decision arrived after the expiry time: it expired the approval now
 */
export const TRANSITION_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return { -1 } end
local status = redis.call('HGET', KEYS[1], 'status')
local now = tonumber(ARGV[5])
local verdict = ARGV[1]
local function final(newStatus, by, name, reason, at)
  redis.call('HSET', KEYS[1], 'status', newStatus, 'decidedBy', by, 'decidedByName', name, 'decidedAt', at,
    'decisionReason', reason)
  redis.call('ZREM', KEYS[3], ARGV[7])
  redis.call('ZREM', KEYS[4], ARGV[7])
  if newStatus ~= 'approved' and redis.call('HGET', KEYS[1], 'tasked') == '1'
    and redis.call('GET', KEYS[6]) == ARGV[7] then
    redis.call('DEL', KEYS[6])
  end
  redis.call('PUBLISH', ARGV[6], ARGV[7])
end
if status ~= 'pending' then
  local d = redis.call('HMGET', KEYS[1], 'decidedBy', 'decidedByName', 'decidedAt')
  return { -2, status, d[1] or '', d[2] or '', d[3] or '' }
end
local expiresAt = tonumber(redis.call('HGET', KEYS[1], 'expiresAt'))
if now >= expiresAt then
  final('expired', '', '', '', tostring(expiresAt))
  if verdict == 'expire' then return { 0, 'expired' } end
  return { 2, 'expired' }
end
if verdict == 'expire' then return { -4 } end
if verdict == 'approve' then
  -- A vote counts only when none of the voter's tokens (their person's key, and every identifier that could be
  -- theirs) is already among the approvers': someone who could be the same person never counts twice.
  local tokens = { ARGV[8] or ARGV[2] }
  for i = 9, #ARGV do tokens[#tokens + 1] = ARGV[i] end
  for _, token in ipairs(tokens) do
    if redis.call('SISMEMBER', KEYS[2], token) == 1 then
      return { -3, tonumber(redis.call('HGET', KEYS[1], 'votes') or '0') }
    end
  end
  redis.call('SADD', KEYS[2], unpack(tokens))
  redis.call('EXPIRE', KEYS[2], redis.call('TTL', KEYS[1]))
  local votes = redis.call('HINCRBY', KEYS[1], 'votes', 1)
  if votes < tonumber(redis.call('HGET', KEYS[1], 'quorum')) then
    redis.call('PUBLISH', ARGV[6], ARGV[7])
    return { 1, votes }
  end
  final('approved', ARGV[2], ARGV[3], '', ARGV[5])
  if redis.call('HGET', KEYS[1], 'tasked') == '1' then redis.call('ZADD', KEYS[5], now, ARGV[7]) end
  return { 0, 'approved' }
end
if verdict == 'reject' then
  final('rejected', ARGV[2], ARGV[3], ARGV[4], ARGV[5])
  return { 0, 'rejected' }
end
final('cancelled', ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return { 0, 'cancelled' }
`;

/**
 * claim — the right to run an approved call upstream. Guarantee: at most one claim ever succeeds for an
 * approval, whichever process or request asks, so an approved call runs at most once.
 * The claimant is recorded, and the id joins the running index, so that if the claimant's process dies
 * while the call runs, another process marks it interrupted (INTERRUPT_SCRIPT) instead of running it again.
 *   KEYS[1] record  KEYS[2] running index  KEYS[3] awaiting-execution index
 *   ARGV[1] now (ms)   ARGV[2] claimant (process id)   ARGV[3] id
 * Returns 1 when claimed, 0 otherwise.
 */
export const CLAIM_SCRIPT = `
local s = redis.call('HMGET', KEYS[1], 'status', 'execution')
if s[1] ~= 'approved' or s[2] ~= 'none' then return 0 end
redis.call('HSET', KEYS[1], 'execution', 'running', 'claimedAt', ARGV[1], 'executor', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
`;

/**
 * start — the claimant is about to send the call upstream (its limits are taken; its `approved` decision is
 * audited next).
 * Guarantee: only while the claim is still this claimant's and still running (not reported interrupted
 * meanwhile), so a call declared orphaned is never sent; records when it really started.
 *   KEYS[1] record   ARGV[1] claimant   ARGV[2] now (ms)   ARGV[3] when its limits were taken (ms)
 * Returns 1 when the call may go, 0 when it must not.
 */
export const START_SCRIPT = `
local s = redis.call('HMGET', KEYS[1], 'execution', 'executor')
if s[1] ~= 'running' or s[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'executionStartedAt', ARGV[2], 'admittedAt', ARGV[3])
return 1
`;

/**
 * unclaim — give the right to execute back when the call never started (its session ended while it waited
 * for its rate-limit window), so the agent's retry can still run it. Only the claimant can, and only while
 * the execution is marked running.
 * A task's call goes back to the awaiting-execution index, for the background worker.
 *   KEYS[1] record  KEYS[2] running index  KEYS[3] awaiting-execution index
 *   ARGV[1] claimant  ARGV[2] now (ms)  ARGV[3] id
 * Returns 1 when given back.
 */
export const UNCLAIM_SCRIPT = `
local s = redis.call('HMGET', KEYS[1], 'execution', 'executor', 'tasked')
if s[1] ~= 'running' or s[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'execution', 'none')
redis.call('HDEL', KEYS[1], 'claimedAt', 'executionStartedAt', 'executor')
redis.call('SREM', KEYS[2], ARGV[3])
if s[3] == '1' then redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3]) end
return 1
`;

/**
 * interrupt — the process that claimed an execution died while the call ran upstream (its liveness key is
 * gone). Guarantee: the call is never run again; it is marked interrupted, and the agent's retry or task
 * gets that news instead of a result. Only applies while the same claimant is still recorded as running.
 *   KEYS[1] record  KEYS[2] running index  KEYS[3] the claimant's liveness key  KEYS[4] binding
 *   ARGV[1] claimant  ARGV[2] now (ms)  ARGV[3] result JSON to hand out  ARGV[4] events channel  ARGV[5] id
 * Returns 1 when marked interrupted, 0 when the execution is not (or no longer) orphaned.
 */
export const INTERRUPT_SCRIPT = `
local s = redis.call('HMGET', KEYS[1], 'execution', 'executor', 'tasked')
if s[1] ~= 'running' or s[2] ~= ARGV[1] then
  if s[1] ~= 'running' then redis.call('SREM', KEYS[2], ARGV[5]) end
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'execution', 'interrupted', 'outcome', 'interrupted', 'executionEndedAt', ARGV[2])
if s[3] == '1' then
  -- A task waits for it: the news is the task's alone.
  redis.call('HSET', KEYS[1], 'taskResult', ARGV[3])
  if redis.call('GET', KEYS[4]) == ARGV[5] then redis.call('DEL', KEYS[4]) end
else
  redis.call('HSET', KEYS[1], 'result', ARGV[3])
end
redis.call('SREM', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`;

/**
 * attach task — an agent's task now waits for this approval, so once approved the call runs in the
 * background (no request needs to be open) and its result is kept for the task.
 * Guarantee: attaches only while the outcome is still ahead (pending, or approved and not yet finished), so
 * the task sees it; an approved call nobody has claimed joins the awaiting-execution index.
 *   KEYS[1] record  KEYS[2] awaiting-execution index   ARGV[1] now (ms)  ARGV[2] id
 * Returns 1 when attached to a pending approval, 2 when attached to an approved one that has not finished,
 * 0 when the outcome is already known (or the approval is gone).
 */
export const ATTACH_TASK_SCRIPT = `
local s = redis.call('HMGET', KEYS[1], 'status', 'execution')
if s[1] == 'pending' then
  redis.call('HSET', KEYS[1], 'tasked', '1')
  return 1
end
if s[1] == 'approved' and (s[2] == 'none' or s[2] == 'running') then
  redis.call('HSET', KEYS[1], 'tasked', '1')
  if s[2] == 'none' then redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2]) end
  return 2
end
return 0
`;

/**
 * finish — record how the single execution ended, and keep its result for the agent's retry when no
 * request was waiting for it. When tasks wait for the approval, the result is also kept for them (a task's
 * result can be fetched again until the task expires).
 * Fenced: only the claimant, while the execution is still marked running (not interrupted meanwhile), can
 * finish it; a task that consumes the result ends the binding (the next identical call asks a person again).
 *   KEYS[1] record  KEYS[2] binding  KEYS[3] running index
 *   ARGV[1] execution: done | interrupted  ARGV[2] outcome  ARGV[3] now (ms)  ARGV[4] result JSON or ''
 *   ARGV[5] '1' when the result was handed to a waiting request  ARGV[6] events channel  ARGV[7] id
 *   ARGV[8] claimant
 * Returns 1 when recorded, 0 when the claim is no longer this claimant's (nothing changes).
 */
export const FINISH_SCRIPT = `
local s = redis.call('HMGET', KEYS[1], 'execution', 'executor', 'tasked')
if s[1] ~= 'running' or s[2] ~= ARGV[8] then return 0 end
redis.call('HSET', KEYS[1], 'execution', ARGV[1], 'outcome', ARGV[2], 'executionEndedAt', ARGV[3])
if ARGV[5] == '1' or s[3] == '1' then
  if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'delivered', '1') end
  if redis.call('GET', KEYS[2]) == ARGV[7] then redis.call('DEL', KEYS[2]) end
elseif ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'result', ARGV[4])
end
if ARGV[4] ~= '' and s[3] == '1' then
  redis.call('HSET', KEYS[1], 'taskResult', ARGV[4])
end
redis.call('SREM', KEYS[3], ARGV[7])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
`;

/**
 * own result — a task claims an approval's result for itself. Guarantee: single use across tasks: the first
 * task that claims it owns it (every later one is told it went to that task); claiming again is harmless.
 *   KEYS[1] record   ARGV[1] task id
 * Returns the owning task id ('' when the approval is gone).
 */
export const OWN_RESULT_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return '' end
redis.call('HSETNX', KEYS[1], 'resultTask', ARGV[1])
return redis.call('HGET', KEYS[1], 'resultTask')
`;

/**
 * take — hand a kept result to the agent's identical retry, once. Guarantee: single use. Nothing is handed
 * out when no result is kept, or when a task waits for the approval (its result is the task's alone). The
 * binding stays for ARGV[2] seconds more, so that identical retries racing this one are told the result was
 * delivered (rather than a person being asked again at once); then the next identical call asks anew.
 *   KEYS[1] record  KEYS[2] binding  ARGV[1] id  ARGV[2] seconds the binding stays (0: ended now)
 * Returns the result JSON, or false when there is none (not finished, or already taken).
 */
export const TAKE_SCRIPT = `
local s = redis.call('HMGET', KEYS[1], 'execution', 'delivered', 'result', 'tasked')
if (s[1] ~= 'done' and s[1] ~= 'interrupted') or s[2] == '1' or not s[3] or s[4] == '1' then return false end
redis.call('HSET', KEYS[1], 'delivered', '1')
redis.call('HDEL', KEYS[1], 'result')
if redis.call('GET', KEYS[2]) == ARGV[1] then
  if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) else redis.call('DEL', KEYS[2]) end
end
return s[3]
`;

/**
 * unbind — end the binding of a call to a decided approval (its rejection or expiry has been told).
 *   KEYS[1] binding   ARGV[1] id
 * Returns 1 when removed.
 */
export const UNBIND_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * not_pending — of the given records, which are no longer pending (decided, or gone): the poll that backs up
 * pub/sub looks at every call parked in a process with one of these, not one round trip per call.
 *   KEYS[1..n] records
 * Returns the 1-based positions of the records whose status is not `pending` (a missing record included).
 */
export const NOT_PENDING_SCRIPT = `
local out = {}
for i, key in ipairs(KEYS) do
  -- pcall: a key that is not a hash (never written by the gateway) is "not pending", not a failed poll.
  if redis.pcall('HGET', key, 'status') ~= 'pending' then out[#out + 1] = i end
end
return out
`;
