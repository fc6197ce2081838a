/**
 * The Lua scripts of the Redis session store: each touches one session's keys only (the hash
 * `H` and the list `Q`, which share a hash tag, so they live in one Redis Cluster slot), and
 * runs atomically. The index of due sessions and the notices are separate commands.
 *
 * A session's hash `H`:
 * - `e` epoch (the fencing token: every write names the epoch of its claim), `o` held by a node (1) or not (0);
 * - `p` principal (absent for an anonymous session);
 * - `rx` last client item recorded; `sn` last client item a node handled before it let the session go;
 * - `tx` last message to the client appended; `ak` messages the client acknowledged (let go);
 * - `w` highest message a promise on some node waits on (0: none); `dl` deadline, ms since the epoch;
 * - `bc` the last entry of the broadcast log (a stream, `<prefix>:broadcasts`) the session took in;
 * - `c` the last message the holder saw recorded: only its commits (and a claim) move it, so a
 *   store that lost writes is noticed even when other nodes appended since;
 * - `qb` the bytes of the messages in `Q` (for `maxQueueBytes` of messages appended from other nodes);
 * - `tp` its places in its topics' logs (JSON, store.ts `TopicPlaces`), as its last commit left them.
 *
 * The list `Q` holds the messages `ak + 1` to `tx`, in order: `m` + a `msg` payload, `r` + the
 * tail of a `res` frame, `t` + a topic message (index.ts `encodeEntry`), or `x` + a `miss` item.
 *
 * A topic's keys share its own hash tag (one slot, whatever the sessions'): the stream `T`
 * (entries with fields `n` its number, `s` its service-wide stamp, `p` its payload), the counter
 * `N` (messages published so far: the next one's number), and the hash `M` of its members
 * (session id → `1`/`0` connected, then `+` and the principal, or `-` for none).
 * @module
 */

/** KEYS: H. ARGV: has principal (1/0), principal, deadline, broadcast. 1 if created, 0 if the id exists. */
export const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'e', 1, 'o', 1, 'rx', 0, 'sn', 0, 'tx', 0, 'ak', 0, 'w', 0, 'dl', ARGV[3], 'bc', ARGV[4], 'c', 0, 'qb', 0)
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'p', ARGV[2]) end
return 1
`

/**
 * KEYS: H, Q. ARGV: has principal (1/0), principal, deadline, ack (last message the client
 * received), acked (last client item it saw acknowledged, -1 if not said), now.
 * Returns {'unknown'}, {'lost'}, {'expired', topics} (its deadline had passed: ended by this call), or
 * {'ok', epoch, rx, tx, unclean (1/0), seen, waiting, entries, broadcast, topics}.
 */
export const CLAIM = `
local h = redis.call('HMGET', KEYS[1], 'e', 'o', 'rx', 'tx', 'ak', 'sn', 'w', 'p', 'bc', 'dl', 'qb', 'c', 'tp')
if not h[1] then return {'unknown'} end
if ARGV[1] == '1' then
  if h[8] ~= ARGV[2] then return {'unknown'} end
elseif h[8] then
  return {'unknown'}
end
-- Past its deadline (no node swept it yet, e.g. none ran for a while): it has expired.
if tonumber(h[10]) < tonumber(ARGV[6]) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'expired', h[13] or ''}
end
local rx, tx, ak = tonumber(h[3]), tonumber(h[4]), tonumber(h[5])
local ack, acked = tonumber(ARGV[4]), tonumber(ARGV[5])
-- The client received more than a holder saw recorded ('c': what was ever written to it; numbers
-- other nodes appended after a loss do not count), or saw items acknowledged the store has not
-- recorded, or acknowledged messages the store let go before it says it received them: the
-- store lost writes.
if ack > tonumber(h[12] or tx) or acked > rx or ack < ak then return {'lost'} end
local epoch = tonumber(h[1]) + 1
local qb = tonumber(h[11] or 0)
if ack > ak then
  for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, ack - ak - 1)) do qb = qb - #entry end
  redis.call('LTRIM', KEYS[2], ack - ak, -1)
end
local waiting = tonumber(h[7])
if waiting <= ack then waiting = 0 end
redis.call('HSET', KEYS[1], 'e', epoch, 'o', 1, 'ak', ack, 'w', waiting, 'dl', ARGV[3], 'c', tx, 'qb', qb)
local unclean = 0
if h[2] == '1' then unclean = 1 end
return {'ok', epoch, rx, tx, unclean, tonumber(h[6]), tonumber(h[7]), redis.call('LRANGE', KEYS[2], 0, -1), h[9] or '0-0', h[13] or ''}
`

/**
 * KEYS: H, Q. ARGV: epoch, rx, base, trim, recorded rx (what this node saw recorded), the last
 * broadcast among the entries ('' if none), the topic places ('' if unchanged), then the entries to append. Returns {'fenced'}, {'gone'}, {'lost'}, or {'ok', waiting, gap} where gap
 * is what others appended after base.
 */
export const COMMIT = `
local h = redis.call('HMGET', KEYS[1], 'e', 'tx', 'ak', 'rx', 'w', 'c', 'qb')
if not h[1] then return {'gone'} end
if h[1] ~= ARGV[1] then return {'fenced'} end
local tx, ak = tonumber(h[2]), tonumber(h[3])
local base = tonumber(ARGV[3])
local qb = tonumber(h[7] or 0)
-- The store holds less than this node saw it record (messages by 'c', which only the holder's
-- commits move, so other nodes' appends cannot hide a loss; client items by 'rx'): it lost
-- writes (restarted from an older file, or a failover). The session cannot go on as it was.
if tonumber(h[6] or base) ~= base or tonumber(h[4]) < tonumber(ARGV[5]) then return {'lost'} end
local gap = {}
if tx > base then gap = redis.call('LRANGE', KEYS[2], base - ak, tx - ak - 1) end
local n = #ARGV - 7
local i = 8
while i <= #ARGV do
  local last = math.min(i + 999, #ARGV)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, last))
  i = last + 1
end
for j = 8, #ARGV do qb = qb + #ARGV[j] end
tx = tx + n
local rx = tonumber(ARGV[2])
if rx < tonumber(h[4]) then rx = tonumber(h[4]) end
local trim = tonumber(ARGV[4])
if trim > ak then
  for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, trim - ak - 1)) do qb = qb - #entry end
  redis.call('LTRIM', KEYS[2], trim - ak, -1)
  ak = trim
end
local waiting = tonumber(h[5])
local left = waiting
if waiting <= ak then left = 0 end
redis.call('HSET', KEYS[1], 'tx', tx, 'ak', ak, 'rx', rx, 'w', left, 'c', tx, 'qb', qb)
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'bc', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'tp', ARGV[7]) end
return {'ok', waiting, gap}
`

/** KEYS: H. ARGV: epoch, deadline, waiting, seen. 1 if released, 0 if fenced or gone. */
export const RELEASE = `
local h = redis.call('HMGET', KEYS[1], 'e', 'w')
if not h[1] or h[1] ~= ARGV[1] then return 0 end
local waiting = math.max(tonumber(h[2]), tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'o', 0, 'dl', ARGV[2], 'w', waiting, 'sn', ARGV[4])
return 1
`

/** KEYS: H. ARGV: epoch, deadline. 1 if the deadline moved, 0 if fenced or gone. */
export const TOUCH = `
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'dl', ARGV[2])
return 1
`

/**
 * KEYS: H, Q. ARGV: entry, waiting (1/0), maxQueue, maxQueueBytes. The message's number; -1 if
 * there is no such session, -2 if it holds maxQueue messages or this one would bring its bytes
 * beyond maxQueueBytes.
 */
export const APPEND = `
local h = redis.call('HMGET', KEYS[1], 'tx', 'ak', 'w', 'qb')
if not h[1] then return -1 end
local tx = tonumber(h[1])
local qb = tonumber(h[4] or 0) + #ARGV[1]
if tx - tonumber(h[2]) >= tonumber(ARGV[3]) or qb > tonumber(ARGV[4]) then return -2 end
redis.call('RPUSH', KEYS[2], ARGV[1])
tx = tx + 1
redis.call('HSET', KEYS[1], 'tx', tx, 'qb', qb)
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'w', tx) end
return tx
`

/** KEYS: H, Q. ARGV: epoch ('' for any). 1 if this call ended the session. */
export const END = `
local e = redis.call('HGET', KEYS[1], 'e')
if not e then return 0 end
if ARGV[1] ~= '' and e ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
`

/**
 * KEYS: H, Q. ARGV: now. {0} if gone already, {1, deadline} if not due (resumed or touched),
 * {2, principal, topics} , {3, '', topics} if anonymous: ended by this call.
 */
export const EXPIRE = `
local h = redis.call('HMGET', KEYS[1], 'dl', 'p', 'tp')
if not h[1] then return {0} end
if tonumber(h[1]) > tonumber(ARGV[1]) then return {1, h[1]} end
redis.call('DEL', KEYS[1], KEYS[2])
if h[2] then return {2, h[2], h[3] or ''} end
return {3, '', h[3] or ''}
`

/**
 * KEYS: M, N, T. ARGV: stamp, payload, maxMessages. Appends to the topic's log, trimmed to
 * maxMessages: its number; -1 when the topic has no members (nothing is kept).
 */
export const PUBLISH = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('INCR', KEYS[2]) - 1
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], '*', 'n', n, 's', ARGV[1], 'p', ARGV[2])
return n
`

/** KEYS: M, N. ARGV: session id, member value. Records the member; the topic's next number. */
export const MEMBER = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return tonumber(redis.call('GET', KEYS[2]) or '0')
`

/**
 * KEYS: N, T. ARGV: stream id to read after ('0-0': all). {next number, entries}, read together
 * (a publish moves both at once).
 */
export const READ_TOPIC = `
local after = '-'
if ARGV[1] ~= '0-0' then after = '(' .. ARGV[1] end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('XRANGE', KEYS[2], after, '+')}
`
