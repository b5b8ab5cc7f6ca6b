-- Release (the capture failed) or expire (the sweeper found a hold past its expiry): void a hold
-- and give its credit back. A hold resolves exactly once.
-- KEYS[1] account hash  KEYS[2] holds hash  KEYS[3] shard sweep index  KEYS[4] hold record
-- KEYS[5] idempotency hash (only when the hold has one)
-- ARGV[1] hold id  ARGV[2] account id  ARGV[3] 'released' or 'expired'
-- ARGV[4] the sweep index member (to drop it when the hold is already gone)
local account, holds, sweep, record, idem = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local hold, account_id, mode, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local available = tonumber(redis.call('HGET', account, 'available') or '0')
local entry = redis.call('HGET', holds, hold)
if not entry then
  local resolved = redis.call('GET', record)
  if mode == 'expired' and member ~= '' then
    redis.call('ZREM', sweep, member)
  end
  if resolved then
    return {'resolved', available, resolved}
  end
  return {'unknown', available}
end
local amount, expires, idem_hash = string.match(entry, '^(%d+)|(%d+)|([^|]*)|')
amount, expires = tonumber(amount), tonumber(expires)
if mode == 'expired' then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  if expires > now then
    return {'not_due', available, string.format('%d', expires)}
  end
end

redis.call('HINCRBY', account, 'reserved', -amount)
redis.call('HINCRBY', account, 'available', amount)
redis.call('HDEL', holds, hold)
redis.call('ZREM', sweep, account_id .. '|' .. hold .. '|' .. idem_hash)
redis.call('SET', record, mode, 'PX', 3600000)
if idem and redis.call('HGET', idem, 'hold') == hold
    and redis.call('HGET', idem, 'state') == 'inflight' then
  redis.call('DEL', idem)
end
return {mode, available + amount}
