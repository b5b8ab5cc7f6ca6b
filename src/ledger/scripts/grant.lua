-- Grant (or, with a negative amount, take back) credits, recorded as one transaction.
-- KEYS[1] account hash  KEYS[2] applied references set  KEYS[3] transaction log
-- KEYS[4] the log of this transaction type
-- ARGV[1] amount  ARGV[2] transaction type  ARGV[3] description  ARGV[4] external reference
-- ('' = none; a reference is applied at most once)  ARGV[5] transaction id
local account, refs, log, log_of_type = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local amount, kind, description, ref, id = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if redis.call('EXISTS', account) == 0 then
  return {'no_account', 0}
end
local available = tonumber(redis.call('HGET', account, 'available') or '0')
if ref ~= '' and redis.call('SISMEMBER', refs, ref) == 1 then
  return {'duplicate', available}
end
if amount == 0 or available + amount < 0 then
  return {'insufficient', available}
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HINCRBY', account, 'available', amount)
redis.call('HINCRBY', account, 'granted', amount)
if ref ~= '' then
  redis.call('SADD', refs, ref)
end
local entry = cjson.encode({
  id = id, type = kind, amount = amount, description = description,
  at = now, balanceAfter = available + amount,
})
redis.call('LPUSH', log, entry)
redis.call('LPUSH', log_of_type, entry)
return {'granted', available + amount}
