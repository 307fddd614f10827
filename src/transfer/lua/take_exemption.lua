-- Counts an exempt transfer, if it still fits the exemption (count and total since the last
-- strong confirmation), atomically.
local n = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
local cents = tonumber(redis.call('HGET', KEYS[1], 'cents') or '0')
if n + 1 > tonumber(ARGV[2]) or cents + tonumber(ARGV[1]) > tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HINCRBY', KEYS[1], 'cents', ARGV[1])
return 1
