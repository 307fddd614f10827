-- Marks the transfer completed and forgets what was owed (sender's slot); returns the transfer's
-- document as it then stands (nil when it is gone).
-- (Only once: when the request and the recovery task both finish, the first one's facts stay.)
redis.call('HDEL', KEYS[2], ARGV[1])
local status = redis.call('JSON.GET', KEYS[1], '$.status')
if status and status ~= '["completed"]' then
  redis.call('JSON.SET', KEYS[1], '$.status', '"completed"')
  redis.call('JSON.SET', KEYS[1], '$.completed_at', ARGV[2])
  redis.call('JSON.SET', KEYS[1], '$.credit_tx', ARGV[3])
end
return redis.call('JSON.GET', KEYS[1])
