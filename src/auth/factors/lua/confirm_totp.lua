-- Makes the pending secret the user's TOTP factor — only if it is still the pending one — with
-- `step` (the confirming code's) as used, and replaces the recovery codes; all at once.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'secret', ARGV[1], 'enrolled_at', ARGV[2], 'last_step', ARGV[3])
redis.call('DEL', KEYS[3])
for i = 4, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
redis.call('SET', KEYS[4], ARGV[2])
return 1
