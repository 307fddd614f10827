-- Replaces a stored secret only if it is still `old` (a factor removed or re-enrolled meanwhile
-- is left alone).
if redis.call('HGET', KEYS[1], 'secret') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'secret', ARGV[2])
return 1
