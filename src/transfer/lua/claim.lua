-- Moves a pending transfer to `executing` — once, and only before it expires — freeing its
-- pending slot and keeping the document as long as a receipt.
local status = redis.call('JSON.GET', KEYS[1], '$.status')
if not status then return -2 end
if status ~= '["confirmation_required"]' then return 0 end
local expires = tonumber(string.match(redis.call('JSON.GET', KEYS[1], '$.expires_at') or '', '%d+'))
if not expires or expires < tonumber(ARGV[1]) then return -1 end
redis.call('JSON.SET', KEYS[1], '$.status', '"executing"')
redis.call('JSON.SET', KEYS[1], '$.confirmed_by', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
