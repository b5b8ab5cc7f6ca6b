-- Create an account with zeroed counters and its sign-up bonus (reference `signup_bonus`, so
-- the bonus is applied at most once however often creation is retried).
-- KEYS[1] account hash  KEYS[2] applied references set  KEYS[3] transaction log
-- KEYS[4] the log of `signup_bonus` transactions
-- ARGV[1] account id  ARGV[2] email  ARGV[3] password hash ('' = none)  ARGV[4] bonus
-- ARGV[5] bonus transaction id  ARGV[6] bonus description
local account, refs, log, log_of_type = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, email, password, bonus = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

if redis.call('EXISTS', account) == 1 then
  return {'exists', tonumber(redis.call('HGET', account, 'available') or '0')}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HSET', account, 'id', id, 'email', email, 'password', password,
  'created', string.format('%d', now),
  'available', 0, 'reserved', 0, 'spent', 0, 'granted', 0)
if bonus > 0 and redis.call('SISMEMBER', refs, 'signup_bonus') == 0 then
  redis.call('HINCRBY', account, 'available', bonus)
  redis.call('HINCRBY', account, 'granted', bonus)
  redis.call('SADD', refs, 'signup_bonus')
  local entry = cjson.encode({
    id = ARGV[5], type = 'signup_bonus', amount = bonus, description = ARGV[6],
    at = now, balanceAfter = bonus,
  })
  redis.call('LPUSH', log, entry)
  redis.call('LPUSH', log_of_type, entry)
  return {'created', bonus}
end
return {'created', 0}
