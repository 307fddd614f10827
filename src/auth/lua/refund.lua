-- Gives back a reserved attempt that succeeded (never below zero, never re-creating a counter).
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
  redis.call('DECR', KEYS[1])
end
return 1
