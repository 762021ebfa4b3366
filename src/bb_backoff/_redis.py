"""The account gate's model in Redis: one rolling window shared by a fleet of processes.

:class:`RedisStore` is a :class:`~bb_backoff.GateStore` whose state lives in
Redis, so every importer process on one account (one credential) asks the
same model when it may send.  The rules are :class:`~._window.WindowModel`'s,
ported to two Lua scripts; a differential property test (``tests/test_redis.py``)
runs random sequences through both and holds them equal, grant for grant.

Keys
    Three per account, all carrying the account key as a hash tag so that
    the same scripts run on a single server and on Redis Cluster:

    - ``{prefix}:{<key>}:log``: a sorted set, the window's log.  Score: the
      send's time (seconds); member: a unique string (a random token per
      store, then the handle's counter), so processes never collide.
    - ``{prefix}:{<key>}:errors``: a sorted set, the sends of the log that an
      error answered (same score and member), left out of what the server
      let through.
    - ``{prefix}:{<key>}:state``: a hash of the model's other fields
      (``limit``, ``ceiling``, ``generation``, ``mode``, ``probe_at``,
      ``lease_until``, ``probe_failures``, ``failures``, ``outage_since``,
      ``hold_until``, ``pace``, ``near``, ``counted_until``, ``since``,
      ``verify_at``, ``checks_held``, ``passed_seen``); numbers as
      ``%.17g`` text, so they round-trip exactly.

    Every call sets the keys to expire two windows (plus a minute) after
    the latest time the account waits for: an abandoned account disappears,
    and its learned limit with it (as the memory store forgets idle ones).

Time
    ``time="server"`` (the default): the scripts read Redis ``TIME``, one
    clock for every process whatever their own clocks say.  ``time="client"``:
    they use the epoch seconds each process passes (its ``now``), for clocks
    kept in step by NTP, and for tests, which drive time themselves.  A
    per-process monotonic clock is never used for the shared state.

Atomicity
    Each call is one script (EVALSHA; redis-py loads the script again after
    a NOSCRIPT), so each call is one atomic step of the model and one round
    trip.  A success that carries no news is not reported at all (see
    :meth:`GateHandle.news <bb_backoff._gate.GateHandle.news>`), so the
    success path of a request costs one round trip: its reservation.
    Every answer also brings back what the process may cache
    (:class:`~._window.Knowledge`: generation, mode, errors in a row,
    ``X-RateLimit-Limit``, ``X-RateLimit-NearLimit``);
    :meth:`RedisStore.knowledge` returns it without I/O.

Fallback
    A request is worth more than the coordination.  When Redis fails (a
    refused connection, a timeout, any Redis error), the call is answered at
    once by a :class:`~bb_backoff.MemoryStore` inside the store, one
    warning is logged on the ``bb_backoff`` logger for the whole outage, and
    Redis is tried again (by one call, the others staying local meanwhile)
    every ``retry_interval`` seconds; an info line says when it is back.

    What is lost while falling back: the other processes' sends (each
    process counts only its own, so together they may overshoot the quota
    until Redis is back, and the 429s that follow teach each local model);
    the answers to reservations Redis made before the outage (they are
    dropped rather than applied to a model that never logged them); and a
    reservation voided across the switch stays logged where it was made
    until it leaves the window (it only makes that model more careful).
    What is not lost: no request fails or waits for Redis beyond the
    timeout; reservations made locally are answered locally, never sent to
    Redis; and the shared model, which keeps its state (within its expiry)
    and takes over again when Redis answers.  Each outage starts a local
    model of its own (one kept from an earlier outage never saw the sends
    made through Redis since); answers to an earlier outage's reservations
    are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from ._exceptions import redact_url
from ._gate import MemoryStore
from ._redis_clients import (
    UnusableRedisURL,
    async_client,
    check_asyncio,
    client_kind,
    client_passwords,
    describe_client,
    is_redis_client,
    is_redis_url,
    scrub,
    sync_client,
    url_passwords,
)
from ._timing import MAX_WAIT, default_clock, to_seconds
from ._window import (
    _BOOKED_AHEAD,
    _PROBE_POLL,
    _SETTLE_SLACK,
    BREAKER,
    GO,
    HOLD,
    MAX_LOGGED,
    MAX_STRETCH,
    MODEL,
    NEAR_LIMIT_ROOM,
    PROBE,
    PROBING,
    RECHECK_DOUBLINGS,
    STRETCH_STEP,
    WAIT,
    WINDOW,
    Grant,
    Knowledge,
    Observation,
    WindowModel,
    WindowParams,
)

if TYPE_CHECKING:
    import redis
    import redis.asyncio

logger: Final = logging.getLogger("bb_backoff")
_TROUBLE: Final = (Exception,)
"""What a Redis call may raise that makes an outage: anything, not only redis-py's
errors and the socket's (a client handed in with an odd setting raises an
AttributeError or an ImportError from deep inside redis-py): a request never
fails because of Redis.  A cancellation (a BaseException) still ends it."""

# Every field of the state hash, in the order the scripts write them.
STATE_FIELDS: Final = (
    "limit",
    "ceiling",
    "generation",
    "mode",
    "probe_at",
    "lease_until",
    "probe_failures",
    "failures",
    "outage_since",
    "hold_until",
    "pace",
    "near",
    "counted_until",
    "since",
    "verify_at",
    "checks_held",
    "passed_seen",
    "stretch",
)
_NOTHING_KNOWN: Final = Knowledge()
# How the store reaches Redis for one call.
_UP: Final = "up"
_TRIAL: Final = "trial"
_LOCAL: Final = "local"

# -- the scripts ---------------------------------------------------------------------
#
# Both scripts start with the same prelude: the settings (ARGV[1..8]), the
# clock (ARGV[9], empty for the server's TIME), the state hash and helpers
# over the log.  Each helper names the WindowModel code it stands for.  Lua
# numbers are doubles, as Python's floats, and the scripts compute every
# value with the same operations in the same order, so the results are the
# same to the last bit; numbers travel as text (%.17g one way, repr() the
# other), never through Redis's integer replies.

_PRELUDE: Final = """
local log_key, state_key, errors_key = KEYS[1], KEYS[2], KEYS[3]

local function fmt(x)
  return string.format('%.17g', x)
end

local function optional(text)
  if text == nil or text == false or text == '' then
    return nil
  end
  return tonumber(text)
end

local function flag(text)
  if text == nil or text == false or text == '' then
    return nil
  end
  return text == '1'
end

local base_window = tonumber(ARGV[1])
local params_limit = optional(ARGV[2])
local failure_threshold = tonumber(ARGV[3])
local probe_initial = tonumber(ARGV[4])
local probe_max = tonumber(ARGV[5])
local breaker_max = tonumber(ARGV[6])
local probe_lease = tonumber(ARGV[7])
local max_hold = tonumber(ARGV[8])

local now = optional(ARGV[9])
if now == nil then
  local time = redis.call('TIME')
  now = tonumber(time[1]) + tonumber(time[2]) / 1000000
end

local FIELDS = {@FIELDS@}
local stored = {}
local flat = redis.call('HGETALL', state_key)
for i = 1, #flat, 2 do
  stored[flat[i]] = flat[i + 1]
end
local S = {
  limit = optional(stored.limit),
  ceiling = optional(stored.ceiling),
  generation = optional(stored.generation) or 0,
  mode = stored.mode or 'model',
  probe_at = optional(stored.probe_at) or 0,
  lease_until = optional(stored.lease_until) or 0,
  probe_failures = optional(stored.probe_failures) or 0,
  failures = optional(stored.failures) or 0,
  outage_since = optional(stored.outage_since) or 0,
  hold_until = optional(stored.hold_until) or 0,
  pace = stored.pace == '1',
  near = flag(stored.near),
  counted_until = optional(stored.counted_until),  -- nil stands for minus infinity
  since = optional(stored.since),
  verify_at = optional(stored.verify_at),
  checks_held = optional(stored.checks_held) or 0,
  passed_seen = optional(stored.passed_seen),
  stretch = optional(stored.stretch) or 0,
}
-- The window in use: the configured one, stretched (WindowModel.stretch)
local window = base_window + S.stretch

-- len(log)
local function log_size()
  return redis.call('ZCARD', log_key)
end

-- log[index][0], 0-based; -1 is the last entry
local function log_time(index)
  local at = string.format('%d', index)
  local entry = redis.call('ZRANGE', log_key, at, at, 'WITHSCORES')
  return tonumber(entry[2])
end

-- WindowModel._log: bisect.insort(log, (at, member)) (the order among equal
-- times never matters), and the first send's time
local function log_add(at, member)
  redis.call('ZADD', log_key, fmt(at), member)
  if S.since == nil or at < S.since then
    S.since = at
  end
end

-- WindowModel._remove: the entry goes only if it is there at that time
local function log_remove(member, at)
  local score = redis.call('ZSCORE', log_key, member)
  if score and tonumber(score) == at then
    redis.call('ZREM', log_key, member)
    return true
  end
  return false
end

-- WindowModel._count: entries with low < time <= high
local function log_count(low, high)
  return redis.call('ZCOUNT', log_key, '(' .. fmt(low), fmt(high))
end

-- WindowModel._let_through: the same, less the sends an error answered
local function let_through(low, high)
  return log_count(low, high) - redis.call('ZCOUNT', errors_key, '(' .. fmt(low), fmt(high))
end

-- WindowModel.cap
local function cap()
  if S.limit ~= nil then
    return S.limit
  end
  if S.ceiling ~= nil then
    return S.ceiling
  end
  return params_limit
end

-- _after: start + seconds, rounded up to the next double until the
-- difference holds seconds exactly (math.nextafter towards +inf)
local function next_up(x)
  if x == 0 then
    return 2 ^ -1074
  end
  local m, e = math.frexp(x)
  if x < 0 and m == -0.5 then
    return x + 2 ^ (e - 54)
  end
  return x + 2 ^ (e - 53)
end

local function after(start, seconds)
  local finish = start + seconds
  while finish - start < seconds do
    finish = next_up(finish)
  end
  return finish
end

-- probe_wait (2 ^ failed overflows to inf, as min(cap, ...) expects)
local function probe_wait(failed, initial, ceiling, draw)
  local base = math.min(ceiling, initial * 2 ^ failed)
  return base / 2 + draw * base / 2
end

-- WindowModel._uncount
local function uncount(when)
  if S.counted_until ~= nil and when <= S.counted_until and S.limit ~= nil and S.limit > 1 then
    S.limit = S.limit - 1
  end
end

-- WindowModel._forget
local function forget()
  S.limit = nil
  S.verify_at = nil
  S.passed_seen = nil
  S.checks_held = 0
  S.counted_until = nil
  S.generation = S.generation + 1
end

local function encode(value)
  if value == nil then
    return nil
  end
  if value == true then
    return '1'
  end
  if value == false then
    return '0'
  end
  if type(value) == 'number' then
    return fmt(value)
  end
  return value
end

-- WindowModel.knowledge
local function knowledge()
  local ceiling, limit = '', ''
  if S.ceiling ~= nil then
    ceiling = string.format('%d', S.ceiling)
  end
  if S.limit ~= nil then
    limit = string.format('%d', S.limit)
  end
  return {
    string.format('%d', S.generation), S.mode, string.format('%d', S.failures), ceiling,
    encode(S.near) or '', limit,
  }
end

-- Write the fields that changed, and keep both keys two windows (and a
-- minute) past the latest time the account waits for.
local function save()
  local set, unset = {}, {}
  for _, field in ipairs(FIELDS) do
    local text = encode(S[field])
    if text ~= stored[field] then
      if text == nil then
        unset[#unset + 1] = field
      else
        set[#set + 1] = field
        set[#set + 1] = text
      end
    end
  end
  if #set > 0 then
    redis.call('HSET', state_key, unpack(set))
  end
  if #unset > 0 then
    redis.call('HDEL', state_key, unpack(unset))
  end
  local latest = math.max(S.hold_until, S.probe_at, S.lease_until)
  if log_size() > 0 then
    latest = math.max(latest, log_time(-1))
  end
  local ttl = math.ceil((2 * window + math.max(0, latest - now) + 60) * 1000)
  if ttl > 1e14 then
    ttl = 1e14
  end
  ttl = string.format('%d', ttl)
  redis.call('PEXPIRE', log_key, ttl)
  redis.call('PEXPIRE', state_key, ttl)
  redis.call('PEXPIRE', errors_key, ttl)
end
"""

_RESERVE_BODY: Final = """
-- WindowModel.reserve: ARGV[10] member, ARGV[11] margin, ARGV[12..13] the
-- void reservation to drop first (member, time), or empty.
local member, margin = ARGV[10], tonumber(ARGV[11])
if ARGV[12] ~= '' and log_remove(ARGV[12], tonumber(ARGV[13])) then
  uncount(tonumber(ARGV[13]))
end
-- With a limit, the sends just before the window are kept too (WindowModel.reserve)
local span = window
if cap() ~= nil then
  span = window + base_window * @MAX_STRETCH@
end
redis.call('ZREMRANGEBYSCORE', log_key, '-inf', fmt(now - span - margin))
redis.call('ZREMRANGEBYSCORE', errors_key, '-inf', fmt(now - span - margin))
-- WindowModel._forget_oldest: no more than MAX_LOGGED while no limit is known
local excess = log_size() - @MAX_LOGGED@ + 1
if excess > 0 and cap() == nil then
  local cut = log_time(excess - 1)
  redis.call('ZREMRANGEBYSCORE', log_key, '-inf', fmt(cut))
  redis.call('ZREMRANGEBYSCORE', errors_key, '-inf', fmt(cut))
  S.since = cut
end

local function reserve()
  if S.mode ~= 'model' then
    -- WindowModel._reserve_probe
    local start = math.max(S.probe_at, S.hold_until)
    local reason = 'probe'
    if S.mode == 'breaker' then
      reason = 'breaker'
    end
    local ceiling = S.ceiling
    if ceiling == nil then
      ceiling = params_limit
    end
    if ceiling ~= nil then
      local count = log_size()
      if count >= ceiling then
        start = math.max(start, after(log_time(count - ceiling), window + margin))
      end
    end
    if S.lease_until > now then
      return {'wait', fmt(math.min(S.lease_until - now, math.max(margin, @PROBE_POLL@))),
        reason, '0'}
    end
    if now < start then
      local why = reason
      if start == S.hold_until then
        why = 'hold'
      end
      return {'wait', fmt(start - now), why, '0'}
    end
    S.lease_until = now + probe_lease
    log_add(now, member)
    return {'probe', '0', reason, fmt(now)}
  end
  -- the limit was just counted (sends on their way included), or a check got through
  local settled = nil
  if S.counted_until ~= nil then
    settled = S.counted_until + margin
  end
  if S.passed_seen ~= nil then
    settled = S.passed_seen + margin
    if settled - now <= @SETTLE_SLACK@ then
      forget()
    end
  end
  if settled ~= nil and settled - now > @SETTLE_SLACK@ then
    return {'wait', fmt(settled - now), 'window', '0'}
  end
  local at, reason = now, ''
  if S.hold_until > at then
    at, reason = S.hold_until, 'hold'
  end
  local limit = cap()
  local count = log_size()
  if limit ~= nil and count > 0 then
    if count >= limit then
      local free = after(log_time(count - limit), window + margin)
      if free > at then
        at, reason = free, 'window'
      end
    end
    if S.pace then
      local paced = log_time(-1) + math.min(margin, window / limit)
      if paced > at then
        at, reason = paced, 'window'
      end
    end
    -- WindowModel._verify_wait
    local stated = S.ceiling
    if stated == nil then
      stated = params_limit
    end
    if reason == 'window' and S.verify_at ~= nil and now >= S.verify_at
        and S.passed_seen == nil and S.lease_until <= now and S.hold_until <= now
        and (stated == nil or count < stated
             or after(log_time(count - stated), window + margin) <= now) then
      if log_count(now - window + margin, now) >= limit then
        S.lease_until = now + probe_lease
        log_add(now, member)
        return {'probe', '0', 'window', fmt(now)}
      end
      local booked = log_time(-1) - now
      if booked > @SETTLE_SLACK@ then
        return {'wait', fmt(math.max(booked, @PROBE_POLL@)), 'window', '0'}
      end
    end
  end
  log_add(at, member)
  return {'go', fmt(at - now), reason, fmt(at)}
end

local reply = reserve()
-- The settings that give the shared model its meaning (the window, what is
-- forgotten; the configured limit), as this caller gives them: every process
-- on the account should give the same.  Other ones seen before go back with
-- the reply, for the caller to warn about.
local settings = ARGV[1] .. ' ' .. ARGV[2]
local other = ''
if stored.settings ~= settings then
  redis.call('HSET', state_key, 'settings', settings)
  other = stored.settings or ''
end
save()
for _, text in ipairs(knowledge()) do
  reply[#reply + 1] = text
end
reply[#reply + 1] = other
return reply
"""

_OBSERVE_BODY: Final = """
-- WindowModel.observe: ARGV[10..13] the grant (kind, generation, member,
-- time), ARGV[14..18] the observation (outcome, sent, hint, header limit,
-- near), ARGV[19] the draw, ARGV[20] the grant's reason.
local kind, generation, member, at = ARGV[10], tonumber(ARGV[11]), ARGV[12], tonumber(ARGV[13])
local outcome, sent, hint = ARGV[14], ARGV[15] == '1', optional(ARGV[16])
local header_limit, near, draw = optional(ARGV[17]), flag(ARGV[18]), tonumber(ARGV[19])
-- The learned limit's check: one send beyond it (WindowModel.reserve)
local check = kind == 'probe' and ARGV[20] == 'window'

-- WindowModel._judge (checks are timed on the configured window, as there)
local function judge(floor, when)
  local ceiling = S.ceiling
  if ceiling == nil then
    ceiling = params_limit
  end
  if S.since ~= nil and S.limit ~= nil and (ceiling == nil or S.limit < ceiling) then
    if floor then
      S.checks_held = 0
      S.verify_at = S.since + base_window
    else
      S.checks_held = 1
      S.verify_at = when + 2 * base_window
    end
  else
    S.checks_held = 0
    S.verify_at = nil
  end
end

-- WindowModel._held
local function held()
  S.checks_held = S.checks_held + 1
  S.verify_at = now + base_window * 2 ^ math.min(S.checks_held, @RECHECK_DOUBLINGS@)
end

-- WindowModel._learn
local function learn(when)
  local low = when - window
  if let_through(low, when) <= 0 then
    return false
  end
  local first = redis.call('ZRANGEBYSCORE', log_key, '(' .. fmt(low), '+inf', 'WITHSCORES',
    'LIMIT', 0, 1)
  local until_ = math.max(when, math.min(tonumber(first[2]) + window, now))
  local count = let_through(low, until_)
  local stated = S.ceiling
  if stated == nil then
    stated = params_limit
  end
  if stated ~= nil and count >= stated then
    count = stated
  end
  S.limit = count
  S.counted_until = until_
  judge(S.since == nil or low < S.since, when)
  return true
end

-- WindowModel._stretched
-- (true: stretched; false: no explanation, the stretch goes once the limit
-- is counted; nil: nothing to explain)
local function stretched(when)
  local limit = cap()
  if limit == nil then
    return nil
  end
  local low = when - window
  local need = limit - let_through(low, when)
  if need <= 0 then
    return nil
  end
  local reach = when - base_window * (1.0 + @MAX_STRETCH@)
  -- The entries in (reach, low], newest first; enough of them to pass the
  -- errors among them.
  local errors = redis.call('ZCOUNT', errors_key, '(' .. fmt(reach), fmt(low))
  local entries = redis.call('ZREVRANGEBYSCORE', log_key, fmt(low), '(' .. fmt(reach),
    'WITHSCORES', 'LIMIT', 0, need + errors)
  local found = nil
  for i = 1, #entries, 2 do
    local score = tonumber(entries[i + 1])
    local errored = redis.call('ZSCORE', errors_key, entries[i])
    if not (errored and tonumber(errored) == score) then
      need = need - 1
      if need == 0 then
        found = score
        break
      end
    end
  end
  if found == nil then
    return false
  end
  local extra = when - found - base_window
  local most = base_window * @MAX_STRETCH@
  if extra >= most then
    return false
  end
  local stretch = math.max(2.0 * S.stretch, base_window * @STRETCH_STEP@, extra * 1.25)
  S.stretch = math.min(stretch, most)
  window = base_window + S.stretch
  return true
end

-- WindowModel._verifying
local function verifying()
  if S.mode ~= 'model' or generation ~= S.generation or S.verify_at == nil
      or at < S.verify_at then
    return false
  end
  S.lease_until = 0
  return true
end

-- WindowModel._rate_limited
local function rate_limited()
  S.failures = 0
  log_remove(member, at)
  uncount(at)
  if hint ~= nil then
    S.hold_until = math.max(S.hold_until, now + math.min(hint, max_hold))
  end
  if check then
    if verifying() then
      held()
    end
    return
  end
  if kind == 'probe' then
    if S.mode == 'breaker' then
      S.mode = 'probe'
      S.probe_failures = 0
    end
    if cap() == nil then
      learn(at)
    end
    S.probe_failures = S.probe_failures + 1
    S.lease_until = 0
    S.probe_at = now + probe_wait(S.probe_failures, probe_initial, probe_max, draw)
    return
  end
  if S.mode ~= 'model' or (generation ~= S.generation
      and (S.passed_seen == nil or generation ~= S.generation - 1)) then
    return
  end
  if S.passed_seen ~= nil
      or (S.verify_at ~= nil and S.verify_at <= now and now < S.lease_until) then
    S.passed_seen = nil
    S.lease_until = 0
    held()
    return
  end
  local explained = nil
  if hint == nil and ARGV[20] == 'window' then
    explained = stretched(at)
    if explained then
      S.generation = S.generation + 1
      return
    end
  end
  S.generation = S.generation + 1
  redis.call('ZREMRANGEBYSCORE', log_key, '(' .. fmt(now + @BOOKED_AHEAD@), '+inf')
  local unlearned = S.limit == nil
  local learned = learn(at)
  if explained == false then
    S.stretch = 0
    window = base_window
  end
  if learned and unlearned and hint == nil then
    return
  end
  S.mode = 'probe'
  S.probe_failures = 0
  S.lease_until = 0
  S.probe_at = now + probe_wait(0, probe_initial, probe_max, draw)
end

-- WindowModel._error
local function failed()
  if not sent then
    if log_remove(member, at) then
      uncount(at)
    end
  elseif redis.call('ZADD', errors_key, fmt(at), member) == 1 then
    uncount(at)
  end
  S.failures = S.failures + 1
  local probe = kind == 'probe'
  if check then
    probe = false
    verifying()
  end
  if S.mode == 'breaker' then
    if probe then
      S.probe_failures = S.probe_failures + 1
      S.lease_until = 0
      S.probe_at = now + probe_wait(S.probe_failures, probe_initial, breaker_max, draw)
    end
    return
  end
  if S.failures >= failure_threshold then
    S.mode = 'breaker'
    S.passed_seen = nil
    S.generation = S.generation + 1
    S.outage_since = now
    S.probe_failures = 0
    S.lease_until = 0
    S.probe_at = now + probe_wait(0, probe_initial, breaker_max, draw)
  elseif probe then
    S.lease_until = 0
  end
end

-- WindowModel._ok
local function succeeded()
  S.failures = 0
  if check then
    local limit = S.limit
    if verifying() and limit ~= nil then
      if let_through(at - window, at) > limit then
        S.passed_seen = now
        S.generation = S.generation + 1
      else
        -- WindowModel._uncounted_error
        local oldest = redis.call('ZRANGEBYSCORE', errors_key, '(' .. fmt(at - window), fmt(at),
          'WITHSCORES', 'LIMIT', 0, 1)
        if #oldest > 0 then
          redis.call('ZREM', errors_key, oldest[1])
          log_remove(oldest[1], tonumber(oldest[2]))
          S.generation = S.generation + 1
        end
      end
    end
    return
  end
  if kind ~= 'probe' or S.mode == 'model' then
    return
  end
  S.probe_failures = 0
  S.lease_until = 0
  if S.mode == 'probe' then
    local ceiling = S.ceiling
    if ceiling == nil then
      ceiling = params_limit
    end
    if S.limit == nil and ceiling == nil then
      S.probe_at = now
      return
    end
    local held = let_through(now - window, now)
    local counted = S.verify_at == nil or S.checks_held > 0
    if S.limit ~= nil and counted and held > S.limit and (ceiling == nil or S.limit < ceiling) then
      forget()
    else
      local estimate = math.max(S.limit or 0, held, 1)
      if ceiling ~= nil then
        S.limit = math.min(estimate, ceiling)
      else
        S.limit = estimate
      end
      S.counted_until = nil
      judge(true, now)
      if S.verify_at ~= nil then
        S.checks_held = -1
      end
    end
  end
  S.mode = 'model'
  S.generation = S.generation + 1
end

-- WindowModel._near
local function near_limit(value)
  S.near = value
  if not value or S.limit ~= nil then
    S.pace = false
    return
  end
  local limit = cap()
  local inside = redis.call('ZCOUNT', log_key, '(' .. fmt(now - window), '+inf')
  S.pace = limit ~= nil and inside < limit * (1 - @NEAR_LIMIT_ROOM@)
end

if header_limit ~= nil and header_limit ~= S.ceiling then
  S.ceiling = math.max(1, header_limit)
  S.limit = nil
  S.verify_at = nil
  S.passed_seen = nil
  S.counted_until = nil
  S.generation = S.generation + 1
end
if outcome == 'rate_limited' then
  rate_limited()
elseif outcome == 'error' then
  failed()
elseif outcome == 'void' then
  -- WindowModel.observe: the send never went
  if log_remove(member, at) then
    uncount(at)
  end
  if kind == 'probe' then
    S.lease_until = 0
  end
else
  succeeded()
end
if near ~= nil and outcome ~= 'error' then
  near_limit(near)
end
save()
return knowledge()
"""

_SUBSTITUTIONS: Final = {
    "@FIELDS@": ", ".join(f"'{field}'" for field in STATE_FIELDS),
    "@PROBE_POLL@": repr(_PROBE_POLL),
    "@SETTLE_SLACK@": repr(_SETTLE_SLACK),
    "@NEAR_LIMIT_ROOM@": repr(NEAR_LIMIT_ROOM),
    "@BOOKED_AHEAD@": repr(_BOOKED_AHEAD),
    "@RECHECK_DOUBLINGS@": repr(RECHECK_DOUBLINGS),
    "@MAX_LOGGED@": repr(MAX_LOGGED),
    "@MAX_STRETCH@": repr(MAX_STRETCH),
    "@STRETCH_STEP@": repr(STRETCH_STEP),
}


def _lua(source: str) -> str:
    for placeholder, value in _SUBSTITUTIONS.items():
        source = source.replace(placeholder, value)
    return source


RESERVE_SCRIPT: Final = _lua(_PRELUDE + _RESERVE_BODY)
"""The Lua script of :meth:`RedisStore.reserve`."""
OBSERVE_SCRIPT: Final = _lua(_PRELUDE + _OBSERVE_BODY)
"""The Lua script of :meth:`RedisStore.observe`."""

# The scripts' words, as the model's constants (so ``is`` works as well as ``==``).
_WORDS: Final = {
    word: word for word in (GO, PROBE, WAIT, HOLD, WINDOW, PROBING, BREAKER, MODEL, "")
}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: float) -> str:
    """A float as text that Lua's ``tonumber`` reads back to the same double."""
    return repr(float(value))


def _params_args(params: WindowParams) -> list[str]:
    return [
        _number(params.window),
        "" if params.limit is None else str(params.limit),
        str(params.failure_threshold),
        _number(params.probe_initial),
        _number(params.probe_max),
        _number(params.breaker_max),
        _number(params.probe_lease),
        _number(params.max_hold),
    ]


def _knowledge(reply: Sequence[object]) -> Knowledge:
    generation, mode, failures, ceiling, near, limit = (_text(item) for item in reply)
    return Knowledge(
        int(generation),
        _WORDS[mode],
        int(failures),
        int(ceiling) if ceiling else None,
        None if not near else near == "1",
        int(limit) if limit else None,
    )


class _Connection:
    """A redis-py client with the two scripts registered on it."""

    __slots__ = ("client", "observe", "reserve")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.reserve = client.register_script(RESERVE_SCRIPT)
        self.observe = client.register_script(OBSERVE_SCRIPT)


def _drop_idle(connection: _Connection) -> None:
    """Close the connections the client's pool holds idle, after a call failed.

    A connection that outlived a restart of Redis fails the first time it
    is taken again, and each failure would start an outage of its own (a
    warning, a new local model, ``retry_interval`` seconds uncoordinated):
    dropped now, the pool opens fresh ones when Redis is back.
    """
    with contextlib.suppress(Exception):  # the pool's own trouble is no request's
        connection.client.connection_pool.disconnect(inuse_connections=False)


async def _adrop_idle(connection: _Connection) -> None:
    """:func:`_drop_idle` for an asyncio client."""
    with contextlib.suppress(Exception):
        await connection.client.connection_pool.disconnect(inuse_connections=False)


class RedisStore:
    """A :class:`~bb_backoff.GateStore` in Redis: one account model for every process.

    Give it to :class:`~bb_backoff.AccountGate` (``AccountGate(store=...)``
    also takes the URL or the client directly and builds one).  Each call
    is one Lua script run atomically on the server: one round trip.  When
    Redis is unreachable, slow or failing, the store answers from its own
    memory at once, logs one warning per outage on the ``bb_backoff``
    logger, and tries Redis again every ``retry_interval`` seconds; see
    the module's documentation for what is shared and what is lost then.

    Args:
        client_or_url: a ``redis://``, ``rediss://`` or ``unix://`` URL (the
            store makes a sync client, and an asyncio client per event
            loop, both with ``timeout`` and without redis-py's retries), a
            :class:`redis.Redis` (used as it is; async callers run it in a
            worker thread with :func:`asyncio.to_thread`), or a
            :class:`redis.asyncio.Redis` (used as it is; async callers only:
            a sync call raises :class:`TypeError`).  A client's own
            timeouts and retries apply: keep them short, a request waits
            for them.
        prefix: the first part of every key.
        time: ``"server"`` (Redis ``TIME`` is the clock) or ``"client"``
            (each process's ``now``, epoch seconds; clocks must agree).
        timeout: for clients made from a URL, how long a connection or a
            call may take before the store falls back (seconds or
            timedelta; more than 0, a day at most).
        retry_interval: how long to stay on local state after a failure
            before trying Redis again (seconds or timedelta; a day at most).
        clock: monotonic seconds, for ``retry_interval``.

    Raises:
        ValueError: for an invalid argument; the message names it.
        ModuleNotFoundError: redis-py is not installed (``pip install
            'bb-backoff[redis]'``).
    """

    def __init__(
        self,
        client_or_url: str | redis.Redis | redis.asyncio.Redis,
        *,
        prefix: str = "bb_backoff",
        time: Literal["server", "client"] = "server",
        timeout: float | timedelta = 0.25,
        retry_interval: float | timedelta = 5.0,
        clock: Callable[[], float] = default_clock,
    ) -> None:
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a non-empty string without braces, got {prefix!r}")
        if time not in ("server", "client"):
            raise ValueError(f"time must be 'server' or 'client', got {time!r}")
        # A day at most, as the clients' timeout: the socket refuses more than
        # 2**63 ns with an OverflowError on every call, and the store would
        # answer from local state for ever "until Redis is back".
        timeout_seconds = to_seconds(timeout, "timeout", maximum=MAX_WAIT)
        if timeout_seconds <= 0:
            raise ValueError(f"timeout must be more than 0 seconds, got {timeout!r}")
        self.retry_interval: Final = to_seconds(retry_interval, "retry_interval", maximum=MAX_WAIT)
        """Seconds on local state after a failure before Redis is tried again."""
        if not callable(clock):
            raise ValueError("clock must be a callable returning monotonic seconds")
        self.prefix: Final = prefix
        self.time: Final = time
        self.timeout: Final = timeout_seconds
        self.uses_epoch_time: Final = time == "client"
        """Whether the scripts use the ``now`` the caller passes (epoch seconds)."""

        self._url: str | None = None
        self._sync: _Connection | None = None
        self._given_async: _Connection | None = None
        self._async_by_loop: dict[asyncio.AbstractEventLoop, _Connection] = {}
        if isinstance(client_or_url, str):
            self._where = redact_url(client_or_url)
            self._sync = _Connection(self._client_from_url(client_or_url))
            self._url = client_or_url
        else:
            kind = client_kind(client_or_url) if is_redis_client(client_or_url) else None
            if kind is None:
                raise ValueError(
                    "client_or_url must be a redis:// (rediss://, unix://) URL, a redis.Redis "
                    f"or a redis.asyncio.Redis, got {type(client_or_url).__name__}"
                )
            connection = _Connection(client_or_url)
            if kind == "sync":
                self._sync = connection
            else:
                self._given_async = connection
            kind_name = f"{type(client_or_url).__module__}.{type(client_or_url).__name__}"
            self._where = f"<{kind_name} {describe_client(client_or_url)}>"
        self._passwords = (
            url_passwords(client_or_url)
            if isinstance(client_or_url, str)
            else client_passwords(client_or_url)
        )
        self._token = secrets.token_hex(8)
        self._fallback = MemoryStore()
        self._outages = 0
        """Outages so far: a local reservation's member carries the count of its own."""
        self._known: dict[str, Knowledge | WindowModel] = {}
        self._mismatched: set[str] = set()
        """Accounts whose model another process runs with other settings (warned once)."""
        self._lock = threading.Lock()
        self._clock = clock
        self._retry_at: float | None = None
        """``None`` while Redis answers; during an outage, when to try it again."""

    def __repr__(self) -> str:
        return (
            f"RedisStore({self._where!r}, prefix={self.prefix!r}, time={self.time!r}"
            f"{', degraded' if self.degraded else ''})"
        )

    # -- construction -------------------------------------------------------------

    def _client_from_url(self, url: str) -> redis.Redis:
        if not is_redis_url(url):
            raise ValueError(
                "client_or_url must be a redis:// (rediss://, unix://) URL or a redis-py "
                f"client, got {redact_url(url)!r}"
            )
        try:
            client = sync_client(url, timeout=self.timeout)
            check_asyncio(url)  # async callers make their client later, once per event loop
        except UnusableRedisURL as error:
            raise ValueError(
                f"client_or_url is not a usable Redis URL: {redact_url(url)!r}: {error}"
            ) from None
        except ValueError:
            raise ValueError(
                f"client_or_url is not a usable Redis URL: {redact_url(url)!r}"
            ) from None
        return client

    # -- what the process knows ------------------------------------------------------

    @property
    def serves_sync(self) -> bool:
        """Whether sync callers can use it (not when it was given a ``redis.asyncio.Redis``)."""
        return self._sync is not None

    @property
    def degraded(self) -> bool:
        """Whether the store answers from local state now (Redis failed and is not back)."""
        return self._retry_at is not None

    def knowledge(self, key: str) -> Knowledge | WindowModel:
        """What this process last learned of the account's model, without asking Redis.

        Updated by every answer: from Redis, or from the local model during
        an outage (then the local model itself).

        Args:
            key: the account's key.
        """
        return self._known.get(key, _NOTHING_KNOWN)

    def stands(self, grant: Grant) -> bool:
        """Whether a reservation this store made still holds, apart from the model's generation.

        One Redis made holds (its generation says the rest).  One the local
        fallback made holds only during its outage and until Redis is due to
        be tried again: a request waiting on it then asks again, and the ask
        tries Redis.  Otherwise a wait booked on the local model (which saw
        none of the other processes' sends, and may have counted a floor of
        one or two in a window full of them) would run on after Redis is
        back, and nothing in the process would even try Redis while every
        request waits.
        """
        if self._made_here(grant):
            return True
        retry_at = self._retry_at
        return retry_at is not None and self._of_this_outage(grant) and self._clock() < retry_at

    def keys(self, key: str) -> tuple[str, str, str]:
        """The account's Redis keys: the log and its errors (sorted sets), the state (a hash)."""
        tag = f"{self.prefix}:{{{key}}}"
        return f"{tag}:log", f"{tag}:state", f"{tag}:errors"

    def model(self, key: str) -> WindowModel | None:
        """The account's model as Redis holds it now, for inspection in tests and debugging.

        A sync call with two commands; it raises on Redis errors (no fallback).

        Args:
            key: the account's key.

        Returns:
            A copy of the model (changing it changes nothing in Redis), or
            ``None`` when Redis holds nothing for the account.
        """
        connection = self._sync_connection()
        log_key, state_key, errors_key = self.keys(key)
        fields = {
            _text(name): _text(value)
            for name, value in connection.client.hgetall(state_key).items()
        }
        entries = connection.client.zrange(log_key, 0, -1, withscores=True)
        if not fields and not entries:
            return None
        model = WindowModel()
        model.log = [(float(score), _text(member)) for member, score in entries]
        errors = connection.client.zrange(errors_key, 0, -1, withscores=True)
        model.errors = [(float(score), _text(member)) for member, score in errors]
        for name in ("limit", "ceiling"):
            if name in fields:
                setattr(model, name, int(fields[name]))
        for name in ("generation", "probe_failures", "failures", "checks_held"):
            setattr(model, name, int(fields.get(name, "0")))
        for name in (
            "probe_at",
            "lease_until",
            "outage_since",
            "hold_until",
            "counted_until",
            "since",
            "verify_at",
            "passed_seen",
            "stretch",
        ):
            if name in fields:
                setattr(model, name, float(fields[name]))
        model.mode = _WORDS[fields.get("mode", MODEL)]
        model.pace = fields.get("pace") == "1"
        model.near = None if "near" not in fields else fields["near"] == "1"
        return model

    # -- the calls --------------------------------------------------------------------

    def reserve(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        member: object,
        margin: float,
        cancel: Grant | None,
    ) -> Grant:
        """Ask when the send ``member`` may go (see :meth:`WindowModel.reserve`).

        Args:
            key: the account's key.
            now: the caller's clock: epoch seconds with ``time="client"``;
                otherwise only the local fallback reads it (any seconds).
            params: the gate's settings.
            member: the handle's id for the send.
            margin: seconds allowed for the round trip when a slot frees.
            cancel: a void reservation to drop first.

        Returns:
            The grant: its ``delay`` in seconds from now, its ``at`` on the
            store's clock.

        Raises:
            TypeError: the store was given a :class:`redis.asyncio.Redis`.
        """
        connection = self._sync_connection()
        route = self._route()
        if route != _LOCAL:
            redis_member = f"{self._token}:{member}"
            args = self._reserve_args(now, params, redis_member, margin, cancel)
            try:
                reply = connection.reserve(keys=self.keys(key), args=args)
            except _TROUBLE as error:
                self._trouble(error)
                _drop_idle(connection)
            else:
                self._recovered(route)
                return self._grant(key, reply, redis_member, params)
        return self._local_reserve(
            key, now=now, params=params, member=member, margin=margin, cancel=cancel
        )

    async def areserve(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        member: object,
        margin: float,
        cancel: Grant | None,
    ) -> Grant:
        """:meth:`reserve` for async callers (in a worker thread for a sync client)."""
        connection = self._async_connection()
        if connection is None:
            return await asyncio.to_thread(
                self.reserve,
                key,
                now=now,
                params=params,
                member=member,
                margin=margin,
                cancel=cancel,
            )
        route = self._route()
        if route != _LOCAL:
            redis_member = f"{self._token}:{member}"
            args = self._reserve_args(now, params, redis_member, margin, cancel)
            try:
                reply = await connection.reserve(keys=self.keys(key), args=args)
            except _TROUBLE as error:
                self._trouble(error)
                await _adrop_idle(connection)
            else:
                self._recovered(route)
                return self._grant(key, reply, redis_member, params)
        return self._local_reserve(
            key, now=now, params=params, member=member, margin=margin, cancel=cancel
        )

    def observe(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        grant: Grant,
        observation: Observation,
        draw: float,
    ) -> Knowledge:
        """Tell the model what the server did (see :meth:`WindowModel.observe`).

        A grant is answered where it was made: a reservation made by the
        local fallback goes to the local model, one made by Redis to Redis
        (dropped if Redis fails meanwhile).

        Args:
            key: the account's key.
            now: the caller's clock (see :meth:`reserve`).
            params: the gate's settings.
            grant: the GO or PROBE grant the send went out on.
            observation: the server's answer.
            draw: a uniform number in ``[0, 1)`` for the probe jitter.

        Returns:
            What the process may cache (also what :meth:`knowledge` returns next).

        Raises:
            TypeError: the store was given a :class:`redis.asyncio.Redis`.
        """
        connection = self._sync_connection()
        if not self._made_here(grant):
            return self._local_observe(
                key, now=now, params=params, grant=grant, observation=observation, draw=draw
            )
        route = self._route()
        if route != _LOCAL:
            args = self._observe_args(now, params, grant, observation, draw)
            try:
                reply = connection.observe(keys=self.keys(key), args=args)
            except _TROUBLE as error:
                self._trouble(error)
                _drop_idle(connection)
            else:
                self._recovered(route)
                return self._learn(key, reply)
        return self._lost(key)

    async def aobserve(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        grant: Grant,
        observation: Observation,
        draw: float,
    ) -> Knowledge:
        """:meth:`observe` for async callers (in a worker thread for a sync client)."""
        connection = self._async_connection()
        if connection is None:
            return await asyncio.to_thread(
                self.observe,
                key,
                now=now,
                params=params,
                grant=grant,
                observation=observation,
                draw=draw,
            )
        if not self._made_here(grant):
            return self._local_observe(
                key, now=now, params=params, grant=grant, observation=observation, draw=draw
            )
        route = self._route()
        if route != _LOCAL:
            args = self._observe_args(now, params, grant, observation, draw)
            try:
                reply = await connection.observe(keys=self.keys(key), args=args)
            except _TROUBLE as error:
                self._trouble(error)
                await _adrop_idle(connection)
            else:
                self._recovered(route)
                return self._learn(key, reply)
        return self._lost(key)

    def close(self) -> None:
        """Close the connections of the sync client this store made from its URL (if any)."""
        if self._url is not None and self._sync is not None:
            self._sync.client.close()

    async def aclose(self) -> None:
        """Close the running event loop's asyncio client made from the URL (if any).

        Call it before the loop ends (redis-py warns about connections left
        open when their loop is gone).
        """
        loop = asyncio.get_running_loop()
        connection = self._async_by_loop.pop(loop, None)
        if connection is not None:
            await connection.client.aclose()

    # -- the parts both drivers share -------------------------------------------------

    def _sync_connection(self) -> _Connection:
        if self._sync is None:
            raise TypeError(
                "client_or_url is a redis.asyncio.Redis: this store serves async callers "
                "only (AsyncBitbucketClient); give it a URL or a redis.Redis to serve sync ones"
            )
        return self._sync

    def _async_connection(self) -> _Connection | None:
        """The asyncio client for the running loop, or ``None`` to run the sync one in a thread."""
        if self._given_async is not None:
            return self._given_async
        url = self._url
        if url is None:
            return None
        loop = asyncio.get_running_loop()
        connection = self._async_by_loop.get(loop)
        if connection is None:
            with self._lock:
                for stale in [old for old in self._async_by_loop if old.is_closed()]:
                    del self._async_by_loop[stale]
                connection = self._async_by_loop.setdefault(
                    loop, _Connection(async_client(url, timeout=self.timeout))
                )
        return connection

    def _reserve_args(
        self, now: float, params: WindowParams, member: str, margin: float, cancel: Grant | None
    ) -> list[str]:
        args = _params_args(params)
        args += ["" if self.time == "server" else _number(now), member, _number(margin)]
        if cancel is not None and self._made_here(cancel):
            args += [str(cancel.member), _number(cancel.at)]
        else:
            # A local reservation stays in the local log until it leaves the window.
            args += ["", ""]
        return args

    def _observe_args(
        self,
        now: float,
        params: WindowParams,
        grant: Grant,
        observation: Observation,
        draw: float,
    ) -> list[str]:
        args = _params_args(params)
        near = observation.near
        args += [
            "" if self.time == "server" else _number(now),
            grant.kind,
            str(grant.generation),
            str(grant.member),
            _number(grant.at),
            observation.outcome,
            "1" if observation.sent else "0",
            "" if observation.hint is None else _number(observation.hint),
            "" if observation.header_limit is None else str(observation.header_limit),
            "" if near is None else "1" if near else "0",
            _number(draw),
            grant.reason,
        ]
        return args

    def _grant(self, key: str, reply: Sequence[object], member: str, params: WindowParams) -> Grant:
        kind, delay, reason, at = (_text(item) for item in reply[:4])
        known = self._known[key] = _knowledge(reply[4:10])
        if reply[10] and key not in self._mismatched:
            self._settings_differ(key, _text(reply[10]), params)
        if kind == WAIT:
            return Grant(WAIT, float(delay), _WORDS[reason], known.generation)
        return Grant(
            _WORDS[kind],
            float(delay),
            _WORDS[reason],
            known.generation,
            member=member,
            at=float(at),
        )

    def _learn(self, key: str, reply: Sequence[object]) -> Knowledge:
        known = self._known[key] = _knowledge(reply)
        return known

    def _made_here(self, grant: Grant) -> bool:
        """Whether Redis made ``grant`` for this store (its member carries the store's token)."""
        member = grant.member
        return isinstance(member, str) and member.startswith(f"{self._token}:")

    def _local_reserve(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        member: object,
        margin: float,
        cancel: Grant | None,
    ) -> Grant:
        if cancel is not None and not self._of_this_outage(cancel):
            # Redis's, or an earlier outage's: it stays in that log until it leaves the window.
            cancel = None
        if cancel is not None:
            kept = self._still_booked(key, cancel, now)
            if kept is not None:
                return kept
        grant = self._fallback.reserve(
            key,
            now=now,
            params=params,
            member=(self._outages, member),
            margin=margin,
            cancel=cancel,
        )
        self._follow_local(key)
        return grant

    def _still_booked(self, key: str, grant: Grant, now: float) -> Grant | None:
        """``grant`` again, when the local model still holds it as booked; else ``None``.

        A reservation of this outage lapses when Redis is due to be tried
        (see :meth:`stands`), not because the local model changed: asked
        again while Redis is still down, it keeps its place in the queue
        (booked anew, it would go behind every request that waits, and a
        long outage would push each one back past its budget).
        """
        fallback = self._fallback
        with fallback._lock:  # noqa: SLF001 (the local store's own lock, around its model)
            local = fallback.model(key)
            if (
                local is None
                or grant.generation < local.generation
                or (grant.at, grant.member) not in local.log
            ):
                return None
        return grant._replace(delay=max(0.0, grant.at - now))

    def _local_observe(
        self,
        key: str,
        *,
        now: float,
        params: WindowParams,
        grant: Grant,
        observation: Observation,
        draw: float,
    ) -> Knowledge:
        if not self._of_this_outage(grant):
            # Made by an earlier outage's local model, which is gone: the
            # answer is dropped, as one to Redis that cannot reach it.
            return self._lost(key)
        known = self._fallback.observe(
            key, now=now, params=params, grant=grant, observation=observation, draw=draw
        )
        self._follow_local(key)
        return known

    def _of_this_outage(self, grant: Grant) -> bool:
        """Whether the local model of the current (or latest) outage made ``grant``."""
        member = grant.member
        return isinstance(member, tuple) and member[0] == self._outages

    def _follow_local(self, key: str) -> None:
        """During an outage the process follows its local model (live: other threads move it)."""
        if self._retry_at is not None:
            local = self._fallback.model(key)
            if local is not None:
                self._known[key] = local

    def _lost(self, key: str) -> Knowledge:
        """The answer to a Redis reservation could not reach Redis: it is dropped."""
        known = self.knowledge(key)
        return known.knowledge() if isinstance(known, WindowModel) else known

    # -- outages -----------------------------------------------------------------------

    def _route(self) -> str:
        """Redis is up, or this call tries it again after ``retry_interval``, or stay local."""
        if self._retry_at is None:  # the common case, without the lock
            return _UP
        with self._lock:
            retry_at = self._retry_at_now()
            if retry_at is None:
                return _UP
            now = self._clock()
            if now < retry_at:
                return _LOCAL
            # This call tries Redis; the others stay local until it knows.
            self._retry_at = now + self.retry_interval
            return _TRIAL

    def _retry_at_now(self) -> float | None:
        """:attr:`_retry_at` read again (another thread may have changed it)."""
        return self._retry_at

    def _trouble(self, error: BaseException) -> None:
        with self._lock:
            first = self._retry_at is None
            self._retry_at = self._clock() + self.retry_interval
            if first:
                # A new outage starts from what this process sees from now on:
                # a local model kept from an earlier one would believe it had
                # watched the account since then (it saw none of the sends
                # that went through Redis meanwhile), and trust a floor.
                self._fallback = MemoryStore()
                self._outages += 1
        if first:
            message = scrub(f"{type(error).__name__}: {error}", self._passwords, "[redacted]")
            logger.warning(
                "Redis at %s failed (%s); the account gate uses this process's memory until "
                "Redis is back (tried again every %.3g s); other processes' sends are not "
                "counted meanwhile",
                self._where,
                message,
                self.retry_interval,
            )

    def _settings_differ(self, key: str, theirs: str, params: WindowParams) -> None:
        """Warn, once per account, that another process shares its model with other settings."""
        self._mismatched.add(key)
        window, _space, limit = theirs.partition(" ")
        logger.warning(
            "another process shares account %s's gate in Redis at %s with other settings "
            "(window=%s s, limit=%s; this one: window=%s s, limit=%s): each forgets and "
            "counts sends by its own, so the shared model is wrong for one of them; give "
            "every process the same AccountGate(window=..., limit=...)",
            key,
            self._where,
            window,
            limit or None,
            _number(params.window),
            params.limit,
        )

    def _recovered(self, route: str) -> None:
        if route != _TRIAL:
            return
        with self._lock:
            self._retry_at = None
        logger.info("Redis at %s is back; the account gate shares its model again", self._where)


__all__ = ["OBSERVE_SCRIPT", "RESERVE_SCRIPT", "STATE_FIELDS", "RedisStore"]
