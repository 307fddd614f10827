-- Accepts time step `step` only if it is newer than the last accepted one (and the factor still
-- exists): a code, or any older one, works once.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_step') or '-1') or -1
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('HSET', KEYS[1], 'last_step', ARGV[1])
return 1
