-- A per-caller rate limit (GCRA: one theoretical arrival time per caller), shared by every host.
-- KEYS[1] the caller's limiter key
-- ARGV[1] emission interval (ms per request)  ARGV[2] burst (requests allowed at once)
-- Returns {allowed (1/0), remaining now, retry after (ms), until fully reset (ms)}.
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local next_tat = tat + interval
local allow_at = next_tat - burst * interval
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', next_tat - now)
return {1, math.floor((now - allow_at) / interval), 0, next_tat - now}
