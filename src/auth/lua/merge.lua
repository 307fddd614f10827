-- Merges an object (ARGV[1]) into the session document only if the key still exists: JSON.MERGE
-- alone would create a document at the root of a session that ended, bringing it back.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('JSON.MERGE', KEYS[1], '$', ARGV[1])
return 1
