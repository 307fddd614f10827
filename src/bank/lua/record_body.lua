-- The body of the one atomic transaction write (see RECORD_BODY in bank/store.rs for its keys
-- and arguments); wrapped by RecordScript, never run alone.
if redis.call('EXISTS', KEYS[4]) == 1 then return redis.error_reply('DUPLICATE transaction id') end
local cur = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if cur ~= tonumber(ARGV[2]) then return redis.error_reply('CONFLICT balance moved') end
local amount = tonumber(ARGV[3])
local new = cur + amount
if new < 0 then return redis.error_reply('INSUFFICIENT funds') end
redis.call('SET', KEYS[1], new)
redis.call('JSON.SET', KEYS[4], '$', ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[5])
local prev = ''
if ARGV[9] == '' then
  local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  prev = newest[1] and newest[1][1] or '0-0'
end
local sid = redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[6], '*',
  'doc', ARGV[4])
redis.call('LPUSH', KEYS[8], sid .. ' ' .. ARGV[4])
redis.call('LTRIM', KEYS[8], 0, 99)
redis.call('EXPIRE', KEYS[8], ARGV[5])
local ts = tonumber(ARGV[7])
local point = ARGV[7] .. ':' .. tostring(new)
for i = 5, 7 do
  local width, keep = tonumber(ARGV[6 + i]), tonumber(ARGV[9 + i])
  local bucket = ts - ts % width
  redis.call('ZREMRANGEBYSCORE', KEYS[i], bucket, bucket)
  redis.call('ZADD', KEYS[i], bucket, point)
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. (bucket - keep))
end
if amount < 0 then redis.call('ZINCRBY', KEYS[3], -amount, ARGV[8]) end
local top = redis.call('ZREVRANGE', KEYS[3], 0, 4, 'WITHSCORES')
local labels, series = {}, {}
for i = 1, #top, 2 do
  labels[#labels + 1] = cjson.encode(top[i])
  series[#series + 1] = top[i + 1]
end
local msg = '{"id":"' .. sid .. '","prev":"' .. prev .. '","account":' .. cjson.encode(ARGV[10]) ..
  ',"tx":' .. ARGV[4] .. ',"spenders":{"labels":[' .. table.concat(labels, ',') ..
  '],"seriesCents":[' .. table.concat(series, ',') .. ']}}'
if ARGV[9] ~= '' then redis.call('SPUBLISH', ARGV[9], msg) end
