-- Read one account's ledger state atomically (audits and tests; writes nothing).
-- KEYS[1] account hash  KEYS[2] holds hash  KEYS[3] transaction log
return {
  redis.call('HMGET', KEYS[1], 'available', 'reserved', 'spent', 'granted'),
  redis.call('HGETALL', KEYS[2]),
  redis.call('LRANGE', KEYS[3], 0, -1),
}
