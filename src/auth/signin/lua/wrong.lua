-- Counts a wrong code, and drops the state when that was its last try.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local wrong = redis.call('HINCRBY', KEYS[1], 'wrong', 1)
if tonumber(redis.call('HGET', KEYS[1], 'tries') or '0') >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
end
return wrong
