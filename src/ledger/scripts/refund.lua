-- Take back the refunded share of a paid order: at most what the account has unspent, never
-- below zero, recorded as one `refund` transaction. Refunds of one order are cumulative (Polar
-- reports the total refunded so far), so each delivery takes only the share not yet taken back.
-- KEYS[1] account hash  KEYS[2] applied references set  KEYS[3] transaction log
-- KEYS[4] refunded credits per order (hash: order id -> refunded share so far)
-- KEYS[5] the log of `refund` transactions
-- ARGV[1] the order's grant reference ('polar_order:<id>')  ARGV[2] order id
-- ARGV[3] refunded share so far, in credits  ARGV[4] description  ARGV[5] transaction id
local account, refs, log, refunds, log_of_type = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local grant_ref, order, share, description, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]

if redis.call('EXISTS', account) == 0 then
  return {'no_account', 0}
end
local available = tonumber(redis.call('HGET', account, 'available') or '0')
-- A refund that overtakes its order's payment waits for it (the caller answers "retry").
if redis.call('SISMEMBER', refs, grant_ref) == 0 then
  return {'not_credited', available}
end
local before = tonumber(redis.call('HGET', refunds, order) or '0')
if share <= before then
  return {'duplicate', available}
end
local take = math.min(share - before, available)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HSET', refunds, order, share)
-- 0 - take, not -take: Lua writes negative zero as "-0", which HINCRBY refuses.
redis.call('HINCRBY', account, 'available', 0 - take)
redis.call('HINCRBY', account, 'granted', 0 - take)
local entry = cjson.encode({
  id = id, type = 'refund', amount = 0 - take,
  description = description .. ': ' .. take .. ' unspent credits taken back',
  at = now, balanceAfter = available - take,
})
redis.call('LPUSH', log, entry)
redis.call('LPUSH', log_of_type, entry)
return {'refunded', available - take, take}
