-- Commit: charge a hold (phase two, success). A hold resolves exactly once.
-- KEYS[1] account hash  KEYS[2] holds hash  KEYS[3] shard sweep index  KEYS[4] hold record
-- KEYS[5] transaction log  KEYS[6] captures per UTC day (hash: YYYY-MM-DD -> count)
-- KEYS[7] the account's pending low-balance notification (hash)
-- KEYS[8] the shard's index of due low-balance notifications (sorted set)
-- KEYS[9] idempotency hash (only when the hold has one)
-- ARGV[1] hold id  ARGV[2] account id  ARGV[3] idempotency ttl (ms)
-- ARGV[4] result state ('done' or 'done_large')  ARGV[5] result metadata  ARGV[6] result body
-- ARGV[7] lifetime of a new pending notification (ms)
-- Returns {'committed', available, low, crossed}: low = 1 when auto top-up's threshold is set
-- and available is below it; crossed = 1 when this charge took the owned balance below it.
-- A crossing on an account with a notification URL queues its notification here, with the
-- charge (one script, one slot): no crash can separate the two.
local account, holds, sweep, record, log, daily, notice, due, idem =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local hold, account_id = ARGV[1], ARGV[2]

-- The UTC date of a Unix time (days-from-civil inverted; Redis' clock, the same for every host).
local function utc_date(seconds)
  local z = math.floor(seconds / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02d', year, month, day)
end

local available = tonumber(redis.call('HGET', account, 'available') or '0')
local reserved = tonumber(redis.call('HGET', account, 'reserved') or '0')
-- 0 when auto top-up is off.
local threshold = tonumber(redis.call('HGET', account, 'topup_threshold') or '0')
local entry = redis.call('HGET', holds, hold)
if not entry then
  local resolved = redis.call('GET', record)
  if resolved then
    return {'resolved', available, resolved}
  end
  return {'unknown', available}
end
local amount, expires, idem_hash, description = string.match(entry, '^(%d+)|(%d+)|([^|]*)|(.*)$')
amount = tonumber(amount)

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HINCRBY', account, 'reserved', -amount)
redis.call('HINCRBY', account, 'spent', amount)
redis.call('HDEL', holds, hold)
redis.call('ZREM', sweep, account_id .. '|' .. hold .. '|' .. idem_hash)
redis.call('SET', record, 'committed', 'PX', 3600000)
redis.call('LPUSH', log, cjson.encode({
  id = hold, type = 'usage', amount = -amount, description = description,
  at = now, balanceAfter = available,
}))
redis.call('HINCRBY', daily, utc_date(tonumber(time[1])), amount)
if idem and redis.call('HGET', idem, 'hold') == hold then
  redis.call('HSET', idem, 'state', ARGV[4], 'meta', ARGV[5], 'body', ARGV[6])
  redis.call('PEXPIRE', idem, tonumber(ARGV[3]))
end
-- The balance the account owns (available + reserved) before and after this charge: it
-- crosses the threshold in exactly one commit, however many run at once.
local before = available + reserved
local low = (threshold > 0 and available < threshold) and 1 or 0
local crossed = (threshold > 0 and before >= threshold and before - amount < threshold) and 1 or 0
if crossed == 1 then
  local url = redis.call('HGET', account, 'notify_url')
  if url and url ~= '' then
    -- At most one pending per account: a newer crossing replaces an older one not yet
    -- delivered (its balance is the newer), under a webhook-id of its own.
    redis.call('DEL', notice)
    redis.call('HSET', notice, 'id', 'msg_' .. hold, 'balance', available,
      'threshold', threshold, 'at', now, 'attempts', 0)
    redis.call('PEXPIRE', notice, tonumber(ARGV[7]))
    redis.call('ZADD', due, now, account_id)
  end
end
return {'committed', available, low, crossed}
