-- GCRA for a batch of requests in one atomic step. Each request counts against every one of
-- its quotas, or against none when any of them refuses it; requests are decided in order, so
-- a batch gives exactly the answers of one script call per request, back to back. The
-- arithmetic is gcra.rs's, in integer microseconds, and the clock is Redis's own, so
-- instances with skewed clocks agree.
--
-- ARGV, per request: its number of quotas N, then limit, period_us, burst of each (1 + 3N)
-- KEYS, per quota of each request in the same order: its state (the TAT in microseconds,
--   expiring when the bucket is full), then its per-key override (hash {limit, period_us,
--   burst}, set by operators)
--
-- Returns, per quota of each request: allowed (0/1), remaining, reset_us, retry_after_us, and
-- the limit, period_us and burst that applied.

if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: allow writes after TIME
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local result = {}
local n = 0    -- values written to result
local key = 0  -- KEYS used by earlier requests
local arg = 1  -- ARGV index of the current request's quota count

while arg <= #ARGV do
  local quotas = tonumber(ARGV[arg])
  local stores = {}
  local all_allowed = true

  for i = 1, quotas do
    local limit = tonumber(ARGV[arg + 3 * i - 2])
    local period = tonumber(ARGV[arg + 3 * i - 1])
    local burst = tonumber(ARGV[arg + 3 * i])
    local override = redis.call('HMGET', KEYS[key + 2 * i], 'limit', 'period_us', 'burst')
    local o_limit, o_period, o_burst = tonumber(override[1]), tonumber(override[2]), tonumber(override[3])
    if o_limit and o_period and o_burst and o_limit >= 1 and o_period >= o_limit and o_burst >= 1 then
      limit, period, burst = o_limit, o_period, o_burst
    end

    local interval = math.max(math.floor(period / limit), 1)
    local tolerance = interval * burst
    local tat = tonumber(redis.call('GET', KEYS[key + 2 * i - 1])) or 0
    local start = math.max(tat, now)
    local until_full = start + interval - now
    if until_full > tolerance then
      all_allowed = false
      result[n + 1], result[n + 2] = 0, 0
      result[n + 3], result[n + 4] = start - now, until_full - tolerance
    else
      result[n + 1], result[n + 2] = 1, math.floor((tolerance - until_full) / interval)
      result[n + 3], result[n + 4] = until_full, 0
      stores[i] = { start + interval, until_full }
    end
    result[n + 5], result[n + 6], result[n + 7] = limit, period, burst
    n = n + 7
  end

  if all_allowed then
    for i, store in pairs(stores) do
      local ttl_ms = math.floor(store[2] / 1000) + 1
      redis.call('SET', KEYS[key + 2 * i - 1], string.format('%d', store[1]), 'PX', ttl_ms)
    end
  end
  key = key + 2 * quotas
  arg = arg + 1 + 3 * quotas
end
return result
