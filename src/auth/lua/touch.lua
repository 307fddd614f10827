-- Refreshes `last_seen_at` and the TTL only if the key still exists (never resurrects it).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('JSON.SET', KEYS[1], '$.last_seen_at', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
