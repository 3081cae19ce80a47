-- GCRA over one or more quotas in one atomic step: the request counts against every quota,
-- or against none when any of them refuses it. The arithmetic is gcra.rs's, in integer
-- microseconds, and the clock is Redis's own, so instances with skewed clocks agree.
--
-- KEYS[2i-1]  state of quota i: its TAT in microseconds, expiring when the bucket is full
-- KEYS[2i]    per-key override of quota i: hash {limit, period_us, burst}, set by operators
-- ARGV[3i-2], ARGV[3i-1], ARGV[3i]   configured limit, period_us, burst of quota i
--
-- Returns, per quota: allowed (0/1), remaining, reset_us, retry_after_us, and the limit,
-- period_us and burst that applied.

if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: allow writes after TIME
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local result = {}
local stores = {}
local all_allowed = true

for i = 1, #KEYS / 2 do
  local limit = tonumber(ARGV[3 * i - 2])
  local period = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  local override = redis.call('HMGET', KEYS[2 * i], 'limit', 'period_us', 'burst')
  local o_limit, o_period, o_burst = tonumber(override[1]), tonumber(override[2]), tonumber(override[3])
  if o_limit and o_period and o_burst and o_limit >= 1 and o_period >= o_limit and o_burst >= 1 then
    limit, period, burst = o_limit, o_period, o_burst
  end

  local interval = math.max(math.floor(period / limit), 1)
  local tolerance = interval * burst
  local tat = tonumber(redis.call('GET', KEYS[2 * i - 1])) or 0
  local start = math.max(tat, now)
  local until_full = start + interval - now
  if until_full > tolerance then
    all_allowed = false
    table.insert(result, 0)
    table.insert(result, 0)
    table.insert(result, start - now)
    table.insert(result, until_full - tolerance)
  else
    table.insert(result, 1)
    table.insert(result, math.floor((tolerance - until_full) / interval))
    table.insert(result, until_full)
    table.insert(result, 0)
    stores[i] = { start + interval, until_full }
  end
  table.insert(result, limit)
  table.insert(result, period)
  table.insert(result, burst)
end

if all_allowed then
  for i, store in pairs(stores) do
    local ttl_ms = math.floor(store[2] / 1000) + 1
    redis.call('SET', KEYS[2 * i - 1], string.format('%d', store[1]), 'PX', ttl_ms)
  end
end
return result
