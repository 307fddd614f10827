-- Closes an account (KEYS[1] its document, KEYS[2] its balance, KEYS[3] the credits its
-- transfers still owe) only when it is empty and owes nothing: the holder becomes ARGV[1] and the
-- account is marked closed, so nothing more is paid into it. Answers `closed`, `owed`, or the
-- balance in cents (ARGV[2], the opening balance, where none was ever written).
local balance = redis.call('GET', KEYS[2]) or ARGV[2]
if tonumber(balance) ~= 0 then return tostring(balance) end
if redis.call('HLEN', KEYS[3]) > 0 then return 'owed' end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('JSON.SET', KEYS[1], '$.closed', 'true')
  redis.call('JSON.SET', KEYS[1], '$.holder', cjson.encode(ARGV[1]))
  redis.call('JSON.SET', KEYS[1], '$.username', '""')
  redis.call('JSON.SET', KEYS[1], '$.city', '""')
end
return 'closed'
