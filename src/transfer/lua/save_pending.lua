-- Stores a transfer waiting for its confirmation (KEYS[2], kept ARGV[6] ms), counted against
-- `max_pending_transfers` (KEYS[1]; those expired are dropped first), atomically: 0, storing
-- nothing, when the user already has that many waiting. It is named in the sender's transfers
-- (KEYS[3], kept ARGV[8] ms after the newest), whose entries from before ARGV[7] go.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) - tonumber(ARGV[1]))
redis.call('JSON.SET', KEYS[2], '$', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[7])
redis.call('PEXPIRE', KEYS[3], ARGV[8])
return 1
