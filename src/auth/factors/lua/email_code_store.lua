-- Stores a code: replacing the earlier one (`ARGV[4]` = 1), or only when there is none.
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'binding', ARGV[2], 'tries', 0)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
