-- Ends the transfer and forgets what was owed (sender's slot): status ARGV[4] (`completed`, or
-- `failed` when the money came back) with failure ARGV[5] ('' for none); returns the transfer's
-- document as it then stands (nil when it is gone).
-- (Only once: when the request and the recovery task both finish, the first one's facts stay.)
redis.call('HDEL', KEYS[2], ARGV[1])
local status = redis.call('JSON.GET', KEYS[1], '$.status')
if status and status ~= '["completed"]' and status ~= '["failed"]' then
  redis.call('JSON.SET', KEYS[1], '$.status', cjson.encode(ARGV[4]))
  redis.call('JSON.SET', KEYS[1], '$.completed_at', ARGV[2])
  redis.call('JSON.SET', KEYS[1], '$.credit_tx', ARGV[3])
  if ARGV[5] ~= '' then redis.call('JSON.SET', KEYS[1], '$.failure', cjson.encode(ARGV[5])) end
end
return redis.call('JSON.GET', KEYS[1])
