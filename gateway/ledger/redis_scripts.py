"""The Lua scripts of the Redis ledger: each money operation is one atomic script.

Redis runs a script to completion before any other command, so "read the
balance, decide, write the hold" cannot interleave with another gateway's
reserve: there is no read-then-write race to lose money in.

Layout (``P`` is ``state.redis_prefix``; amounts are integer nano-dollars as strings):

* ``P acct:{id}``        hash  balance, reserved, created_at
* ``P accounts``         set   of account ids
* ``P acct:{id}:keys``   list  of key ids, in creation order
* ``P key:{key_id}``     hash  state (JSON: KeyRecord.to_state's static fields, ``kind`` included),
                               account, hash, limit ('' = none), revoked (0/1), spent, reserved, last_used_at;
                               period, rpm, tpm, maxc ('' = none: limits.py); wstart, wspent (the spend
                               window: its start in unix seconds, and what was spent in it);
                               inflight, itok (requests in flight and their token estimates)
* ``P rpm:{key_id}``     zset  rid -> admission time (ms, the ledger's clock): the rolling minute for rpm
* ``P tpm:{key_id}``     zset  "rid|tokens" -> settle time (ms): the rolling minute for tpm
* ``P hash:{sha256}``    string key id (the authentication index; keys are stored hashed only)
* ``P credits``          hash  reference -> JSON {account, nano, at} (applied once per reference)
* ``P resv:{rid}``       hash  account, key, amount, tokens: one in-flight request's hold (tokens: its
                               estimate, counted in the key's inflight/itok while the hold lives)
* ``P resv``             zset  rid -> expiry (Redis server time, ms): renewed by the live gateway,
                               purged (hold given back) once expired, i.e. when its gateway died
* ``P settled:{rid}``    string, expires after a week: the settle of ``rid`` happened (idempotence)
* ``P usage_at``, ``P usage_at:{account}``  zsets of usage records (JSON members, unique by request id),
                               scored by ``created_at``; older than the retention period: removed at each settle
                               (``P usage`` / ``P usage:{account}`` were lists before; MIGRATE_USAGE moves them)
* ``P events``           pub/sub channel: ``revoke <hash>``, ``key <hash>``, ``account <id>``

Scripts compute keys from the prefix they are given (standalone Redis or a
Sentinel-managed primary; Redis Cluster is not supported). Reservation expiry
uses ``redis.call('TIME')``, one clock for every gateway machine. Spend windows
and rolling minutes use the time the gateway passes in (the ledger's own clock,
which tests control): window starts are computed in Python (limits.py), so the
calendar lives in one place. Lua numbers are
doubles: balances compare exactly up to 2^53 nano-dollars (about $9M per
account); the stored values are 64-bit integers that HINCRBY adds exactly.
"""

from __future__ import annotations

_COMMON = r"""
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(x) return string.format('%d', x) end
local function add(key, field, amount)  -- amount: an integer string; HINCRBY refuses '-0'
  if amount ~= '0' and amount ~= '-0' then redis.call('HINCRBY', key, field, amount) end
end
local function neg(amount)
  if string.sub(amount, 1, 1) == '-' then return string.sub(amount, 2) end
  return '-' .. amount
end
local function drop_hold(rid)
  local resv = P .. 'resv:' .. rid
  local r = redis.call('HMGET', resv, 'account', 'key', 'amount', 'tokens')
  redis.call('ZREM', P .. 'resv', rid)
  if not r[1] then return false end
  local key = P .. 'key:' .. r[2]
  add(P .. 'acct:' .. r[1], 'reserved', neg(r[3]))
  add(key, 'reserved', neg(r[3]))
  if r[4] then  -- counted in the key's in-flight requests (max_concurrent, tpm)
    redis.call('HINCRBY', key, 'inflight', -1)
    add(key, 'itok', neg(r[4]))
  end
  redis.call('DEL', resv)
  return true
end
local function purge(now, limit)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'resv', '-inf', now, 'LIMIT', 0, limit)
  for _, rid in ipairs(expired) do drop_hold(rid) end
  return #expired
end
"""

# ARGV: P, rid, account, key_id, estimate, ttl_ms, now_ms, tokens, day_start, week_start, month_start
#   -> {1, amount} | {-1, balance, reserved} no balance | {-2, limit} key's spend window used up
#      | {-3} no account | {-4} key revoked or gone | {-5} rid already settled
#      | {-6, reason, requests, tokens, inflight, requests_reset_ms, tokens_reset_ms} rate limited
#        (reason: 'concurrent' | 'rpm' | 'tpm')
RESERVE = _COMMON + r"""
local rid, account, key_id = ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
purge(now, 100)
local resv = P .. 'resv:' .. rid
local existing = redis.call('HGET', resv, 'amount')
if existing then return {1, existing} end  -- a retried reserve: the same hold, not a second one
if redis.call('EXISTS', P .. 'settled:' .. rid) == 1 then return {-5} end
local acct = P .. 'acct:' .. account
local a = redis.call('HMGET', acct, 'balance', 'reserved')
if not a[1] then return {-3} end
local key = P .. 'key:' .. key_id
local k = redis.call('HMGET', key, 'revoked', 'limit', 'spent', 'reserved', 'period', 'wstart', 'wspent',
                     'rpm', 'tpm', 'maxc', 'inflight', 'itok')
if not k[1] or k[1] == '1' then return {-4} end
local available = tonumber(a[1]) - tonumber(a[2])
if available <= 0 then return {-1, a[1], a[2]} end
local amount = math.max(tonumber(ARGV[5]), 0)
if amount > available then amount = available end
if k[2] and k[2] ~= '' then
  local spent = tonumber(k[3])
  if k[5] and k[5] ~= '' then  -- a calendar window: only this window's spend counts
    local starts = {day = ARGV[9], week = ARGV[10], month = ARGV[11]}
    if k[6] == starts[k[5]] then spent = tonumber(k[7]) else spent = 0 end
  end
  local remaining = tonumber(k[2]) - spent - tonumber(k[4])
  if remaining <= 0 then return {-2, k[2]} end
  if amount > remaining then amount = remaining end
end
local rpm, tpm, maxc = tonumber(k[8] or ''), tonumber(k[9] or ''), tonumber(k[10] or '')
local tokens = ARGV[8]
if rpm or tpm or maxc then
  local clock = tonumber(ARGV[7])
  local inflight, requests, used = tonumber(k[11] or '0') or 0, 0, 0
  local rk, tk = P .. 'rpm:' .. key_id, P .. 'tpm:' .. key_id
  if rpm then
    redis.call('ZREMRANGEBYSCORE', rk, '-inf', clock - 60000)
    requests = redis.call('ZCARD', rk)
  end
  local window = {}
  if tpm then
    redis.call('ZREMRANGEBYSCORE', tk, '-inf', clock - 60000)
    window = redis.call('ZRANGE', tk, 0, -1, 'WITHSCORES')
    for i = 1, #window, 2 do used = used + tonumber(string.match(window[i], '|(%d+)$')) end
    used = used + (tonumber(k[12] or '0') or 0)
  end
  local reason = nil
  if maxc and inflight >= maxc then reason = 'concurrent'
  elseif rpm and requests >= rpm then reason = 'rpm'
  elseif tpm and used >= tpm then reason = 'tpm' end
  if reason then
    local requests_reset, tokens_reset = 1000, 1000
    if rpm and requests > 0 and reason ~= 'concurrent' then
      local oldest = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
      requests_reset = tonumber(oldest[2]) + 60000 - clock
    end
    if tpm then
      local over = used - tpm + 1
      for i = 1, #window, 2 do
        over = over - tonumber(string.match(window[i], '|(%d+)$'))
        if over <= 0 then tokens_reset = tonumber(window[i + 1]) + 60000 - clock break end
      end
    end
    return {-6, reason, requests, used, inflight, int(requests_reset), int(tokens_reset)}
  end
  if rpm then
    redis.call('ZADD', rk, clock, rid)
    redis.call('PEXPIRE', rk, 61000)
  end
  redis.call('HINCRBY', key, 'inflight', 1)
  add(key, 'itok', tokens)
else
  tokens = nil
end
local s = int(amount)
add(acct, 'reserved', s)
add(key, 'reserved', s)
redis.call('HSET', resv, 'account', account, 'key', key_id, 'amount', s)
if tokens then redis.call('HSET', resv, 'tokens', tokens) end
redis.call('ZADD', P .. 'resv', now + tonumber(ARGV[6]), rid)
return {1, s}
"""

# ARGV: P, rid, account, key_id, cost, at, record_json, settled_ttl_s, record created_at, retention_s,
#       tokens, at_ms, day_start, week_start, month_start (the windows ``at`` falls in)
#   -> 1 charged | 0 already settled (a retry: nothing charged twice)
SETTLE = _COMMON + r"""
local rid, account, key_id, cost = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local marker = P .. 'settled:' .. rid
if redis.call('EXISTS', marker) == 1 then return 0 end
drop_hold(rid)
local key = P .. 'key:' .. key_id
add(P .. 'acct:' .. account, 'balance', neg(cost))
add(key, 'spent', cost)
redis.call('HSET', key, 'last_used_at', ARGV[6])
local k = redis.call('HMGET', key, 'period', 'wstart', 'tpm')
if k[1] and k[1] ~= '' then  -- the spend window the settle time falls in
  local start = ({day = ARGV[13], week = ARGV[14], month = ARGV[15]})[k[1]]
  if k[2] ~= start then redis.call('HSET', key, 'wstart', start, 'wspent', '0') end
  add(key, 'wspent', cost)
end
if k[3] and k[3] ~= '' and ARGV[11] ~= '0' then  -- tpm: the real tokens count from now for a minute
  redis.call('ZADD', P .. 'tpm:' .. key_id, tonumber(ARGV[12]), rid .. '|' .. ARGV[11])
  redis.call('PEXPIRE', P .. 'tpm:' .. key_id, 61000)
end
redis.call('SET', marker, '1', 'EX', tonumber(ARGV[8]))
local created, cutoff = tonumber(ARGV[9]), string.format('(%.3f', tonumber(ARGV[9]) - tonumber(ARGV[10]))
for _, name in ipairs({P .. 'usage_at:' .. account, P .. 'usage_at'}) do
  redis.call('ZADD', name, created, ARGV[7])
  redis.call('ZREMRANGEBYSCORE', name, '-inf', cutoff)
end
return 1
"""

# ARGV: P, account, bucket width (s), min score, max score -> {{start, model, requests, input, output, cached,
#   cache_write, cost_nano}, ...} (numbers as strings): /v1/usage/summary summed inside Redis, so the
#   records never travel to the gateway. Costs are summed as integer nano-dollars (exact below 2^53 per row).
USAGE_SUMMARY = r"""
local P, width = ARGV[1], tonumber(ARGV[3])
local function count(x) if type(x) == 'number' then return x end return 0 end
local function nano(text)
  if type(text) ~= 'string' then return 0 end
  local sign, whole, frac = string.match(text, '^(%-?)(%d+)%.?(%d*)$')
  if not whole then return 0 end
  local value = tonumber(whole) * 1000000000 + tonumber(string.sub(frac .. '000000000', 1, 9))
  if sign == '-' then return -value end
  return value
end
local groups, order = {}, {}
for _, raw in ipairs(redis.call('ZRANGEBYSCORE', P .. 'usage_at:' .. ARGV[2], ARGV[4], ARGV[5])) do
  local ok, r = pcall(cjson.decode, raw)
  if ok and type(r) == 'table' then
    local start = math.floor(count(r.created_at) / width) * width
    local model = r.model
    if type(model) ~= 'string' then model = '?' end
    local id = string.format('%d', start) .. '\n' .. model
    local g = groups[id]
    if not g then
      g = {start, model, 0, 0, 0, 0, 0, 0}
      groups[id] = g
      table.insert(order, id)
    end
    g[3] = g[3] + 1
    g[4] = g[4] + count(r.input_tokens)
    g[5] = g[5] + count(r.output_tokens)
    g[6] = g[6] + count(r.cached_tokens)
    g[7] = g[7] + count(r.cache_write_tokens)
    g[8] = g[8] + nano(r.cost_usd)
  end
end
local out = {}
for _, id in ipairs(order) do
  local g = groups[id]
  table.insert(out, {string.format('%d', g[1]), g[2], string.format('%d', g[3]), string.format('%d', g[4]),
                     string.format('%d', g[5]), string.format('%d', g[6]), string.format('%d', g[7]),
                     string.format('%d', g[8])})
end
return out
"""

# ARGV: P -> records moved. Once, on start: the usage lists of older versions become the zsets above.
MIGRATE_USAGE = r"""
local P = ARGV[1]
if redis.call('TYPE', P .. 'usage')['ok'] ~= 'list' then return 0 end
local moved = 0
local function move(list, zset)
  for _, raw in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local ok, r = pcall(cjson.decode, raw)
    local at = 0
    if ok and type(r) == 'table' and type(r.created_at) == 'number' then at = r.created_at end
    redis.call('ZADD', zset, at, raw)
    moved = moved + 1
  end
  redis.call('DEL', list)
end
for _, account in ipairs(redis.call('SMEMBERS', P .. 'accounts')) do
  move(P .. 'usage:' .. account, P .. 'usage_at:' .. account)
end
move(P .. 'usage', P .. 'usage_at')
return moved
"""

# ARGV: P, rid -> 1 released | 0 nothing held (already settled, released or expired)
RELEASE = _COMMON + r"""
if drop_hold(ARGV[2]) then return 1 end
return 0
"""

# ARGV: P, ttl_ms, rid... -> number renewed (live reservations of this gateway)
RENEW = _COMMON + r"""
local expiry = now_ms() + tonumber(ARGV[2])
local renewed = 0
for i = 3, #ARGV do
  renewed = renewed + redis.call('ZADD', P .. 'resv', 'XX', 'CH', expiry, ARGV[i])
end
return renewed
"""

# ARGV: P, limit -> number of expired holds given back
PURGE = _COMMON + r"""
return purge(now_ms(), tonumber(ARGV[2]))
"""

# ARGV: P, account... -> per account {balance, reserved} or {} when unknown (expired holds purged first)
BALANCES = _COMMON + r"""
purge(now_ms(), 1000)
local out = {}
for i = 2, #ARGV do
  local a = redis.call('HMGET', P .. 'acct:' .. ARGV[i], 'balance', 'reserved')
  if a[1] then out[#out + 1] = {a[1], a[2]} else out[#out + 1] = {} end
end
return out
"""

# ARGV: P, sha256 -> the key hash's fields as a flat list, or {} when unknown
LOOKUP = r"""
local P = ARGV[1]
local key_id = redis.call('GET', P .. 'hash:' .. ARGV[2])
if not key_id then return {} end
return redis.call('HGETALL', P .. 'key:' .. key_id)
"""

# ARGV: P, account, balance, at -> 1 created | 0 exists
CREATE_ACCOUNT = r"""
local P = ARGV[1]
local acct = P .. 'acct:' .. ARGV[2]
if redis.call('EXISTS', acct) == 1 then return 0 end
redis.call('HSET', acct, 'balance', ARGV[3], 'reserved', '0', 'created_at', ARGV[4])
redis.call('SADD', P .. 'accounts', ARGV[2])
return 1
"""

# ARGV: P, key_id, account, sha256, state_json, limit, period, rpm, tpm, maxc ('' = none)
#   -> 1 | 0 hash known | -1 no account | -2 key id taken
ADD_KEY = r"""
local P = ARGV[1]
local key_id, account, digest = ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', P .. 'acct:' .. account) == 0 then return -1 end
if redis.call('EXISTS', P .. 'hash:' .. digest) == 1 then return 0 end
if redis.call('EXISTS', P .. 'key:' .. key_id) == 1 then return -2 end
redis.call('HSET', P .. 'key:' .. key_id, 'state', ARGV[5], 'account', account, 'hash', digest, 'limit', ARGV[6],
           'revoked', '0', 'spent', '0', 'reserved', '0', 'last_used_at', '', 'period', ARGV[7] or '',
           'rpm', ARGV[8] or '', 'tpm', ARGV[9] or '', 'maxc', ARGV[10] or '', 'wstart', '', 'wspent', '0',
           'inflight', '0', 'itok', '0')
redis.call('SET', P .. 'hash:' .. digest, key_id)
redis.call('RPUSH', P .. 'acct:' .. account .. ':keys', key_id)
redis.call('PUBLISH', P .. 'events', 'key ' .. digest)
return 1
"""

# ARGV: P, key_id -> 1 revoked (or already) | 0 no such key
REVOKE = r"""
local P = ARGV[1]
local key = P .. 'key:' .. ARGV[2]
local digest = redis.call('HGET', key, 'hash')
if not digest then return 0 end
if redis.call('HGET', key, 'revoked') ~= '1' then
  redis.call('HSET', key, 'revoked', '1')
end
redis.call('PUBLISH', P .. 'events', 'revoke ' .. digest)
return 1
"""

# ARGV: P, account, amount, reference, entry_json -> 1 applied | 0 reference already applied | -1 no account
CREDIT = r"""
local P = ARGV[1]
local acct = P .. 'acct:' .. ARGV[2]
if redis.call('EXISTS', acct) == 0 then return -1 end
if redis.call('HSETNX', P .. 'credits', ARGV[4], ARGV[5]) == 0 then return 0 end
redis.call('HINCRBY', acct, 'balance', ARGV[3])
redis.call('PUBLISH', P .. 'events', 'account ' .. ARGV[2])
return 1
"""
