-- Checks and burns in one step: -2 for the right code of this enrolment (then deleted), -1 when
-- there is none, otherwise the tries left (a code with none left is deleted).
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
local fields = redis.call('HMGET', KEYS[1], 'digest', 'binding')
if fields[1] == ARGV[1] and fields[2] == ARGV[2] and tries <= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return -2
end
if tries >= tonumber(ARGV[3]) then redis.call('DEL', KEYS[1]) end
return math.max(tonumber(ARGV[3]) - tries, 0)
