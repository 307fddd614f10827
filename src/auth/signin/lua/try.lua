-- Counts a try before its code is checked: its number, or 0 when the state is gone. The state is
-- dropped once [`MAX_TRIES`] have been counted (never re-created once gone).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if n > tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) return 0 end
return n
