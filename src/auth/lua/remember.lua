-- Stores the device (its field expires `device_trust_days` after this use) and forgets the
-- least recently used ones beyond [`MAX_DEVICES`], in one step.
local old = redis.call('HGET', KEYS[1], ARGV[1])
local doc = cjson.decode(ARGV[2])
if old then
  local ok, previous = pcall(cjson.decode, old)
  if ok and previous.created_at then doc.created_at = previous.created_at end
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(doc))
redis.call('HEXPIRE', KEYS[1], ARGV[3], 'FIELDS', 1, ARGV[1])
local n = redis.call('HLEN', KEYS[1])
local max = tonumber(ARGV[4])
if n > max then
  local all = redis.call('HGETALL', KEYS[1])
  local entries = {}
  for i = 1, #all, 2 do
    local ok, d = pcall(cjson.decode, all[i + 1])
    table.insert(entries, {all[i], (ok and tonumber(d.last_used_at)) or 0})
  end
  table.sort(entries, function(a, b) return a[2] < b[2] end)
  for i = 1, n - max do redis.call('HDEL', KEYS[1], entries[i][1]) end
end
return n
