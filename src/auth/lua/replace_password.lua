-- Replaces a user's password hash only if it is still the one the caller checked (SHA-1 of the
-- stored PHC string in ARGV[1]): two changes or resets racing each other cannot both succeed,
-- and a reset link made for an older password finds it replaced. Clears the compromised mark
-- and the "outdated" mark. Never re-creates a deleted user.
-- KEYS[1] user document; ARGV[1] fingerprint; ARGV[2] the new hash as a JSON string.
local stored = redis.call('JSON.GET', KEYS[1], '$.password_hash')
if not stored then return 0 end
local hash = cjson.decode(stored)[1]
if not hash or redis.sha1hex(hash) ~= ARGV[1] then return 0 end
redis.call('JSON.SET', KEYS[1], '$.password_hash', ARGV[2])
redis.call('JSON.SET', KEYS[1], '$.password_compromised', 'false')
redis.call('JSON.DEL', KEYS[1], '$.password_outdated')
return 1
