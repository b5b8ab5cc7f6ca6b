-- Read one account's ledger state atomically (audits and tests; writes nothing).
-- KEYS[1] account hash  KEYS[2] holds hash  KEYS[3] transaction log
-- KEYS[4] captures per UTC day  KEYS[5..] the per-type logs (in the order the caller gives)
local by_type = {}
for i = 5, #KEYS do
  by_type[#by_type + 1] = redis.call('LRANGE', KEYS[i], 0, -1)
end
return {
  redis.call('HMGET', KEYS[1], 'available', 'reserved', 'spent', 'granted'),
  redis.call('HGETALL', KEYS[2]),
  redis.call('LRANGE', KEYS[3], 0, -1),
  redis.call('HGETALL', KEYS[4]),
  by_type,
}
