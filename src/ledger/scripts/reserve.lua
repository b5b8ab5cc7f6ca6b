-- Reserve: put `amount` credits of an account on hold (phase one of a two-phase transfer).
-- KEYS[1] account hash   KEYS[2] holds hash   KEYS[3] shard sweep index   KEYS[4] hold record
-- KEYS[5] idempotency hash (only when the request carries an Idempotency-Key)
-- ARGV[1] hold id  ARGV[2] account id  ARGV[3] amount  ARGV[4] hold ttl (ms)
-- ARGV[5] idempotency fingerprint  ARGV[6] idempotency key hash ('' = none)  ARGV[7] description
-- ARGV[8] most credits the account may hold at once (0 = no cap): its captures in flight
-- Returns {outcome, available, ...}. Every check comes before the first write.
local account, holds, sweep, record, idem = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local hold, account_id = ARGV[1], ARGV[2]
local amount, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local fingerprint, idem_hash, description = ARGV[5], ARGV[6], ARGV[7]
local max_held = tonumber(ARGV[8])

if redis.call('EXISTS', account) == 0 then
  return {'no_account', 0}
end
local available = tonumber(redis.call('HGET', account, 'available') or '0')
local resolved = redis.call('GET', record)
if resolved then
  return {'resolved', available, resolved}
end
if redis.call('HEXISTS', holds, hold) == 1 then
  return {'held', available}
end
if idem then
  local current = redis.call('HMGET', idem, 'fp', 'state', 'meta', 'body')
  if current[2] then
    if current[1] ~= fingerprint then
      return {'idem_mismatch', available}
    end
    if current[2] == 'inflight' then
      return {'idem_inflight', available}
    end
    if current[2] == 'done' then
      return {'idem_done', available, current[3] or '', current[4] or ''}
    end
    return {'idem_unavailable', available}
  end
end
if amount < 1 or amount > available then
  return {'insufficient', available}
end
if max_held > 0 and tonumber(redis.call('HGET', account, 'reserved') or '0') + amount > max_held then
  return {'busy', available}
end

local time = redis.call('TIME')
local expires = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + ttl
redis.call('HINCRBY', account, 'available', -amount)
redis.call('HINCRBY', account, 'reserved', amount)
redis.call('HSET', holds, hold,
  string.format('%d|%d|%s|%s', amount, expires, idem_hash, description))
redis.call('ZADD', sweep, expires, account_id .. '|' .. hold .. '|' .. idem_hash)
if idem then
  redis.call('DEL', idem)
  redis.call('HSET', idem, 'fp', fingerprint, 'state', 'inflight', 'hold', hold)
end
return {'ok', available - amount, string.format('%d', expires)}
