-- Writes ARGV[2] wherever a name field or the owner field of the documents KEYS (one account's
-- transactions and transfers: one slot) holds ARGV[1]. Answers how many fields it changed.
local changed = 0
for _, key in ipairs(KEYS) do
  for _, path in ipairs({'$.fromAccountName', '$.toAccountName', '$.from_name', '$.user'}) do
    local found = redis.call('JSON.GET', key, path)
    if found and cjson.decode(found)[1] == ARGV[1] then
      redis.call('JSON.SET', key, path, cjson.encode(ARGV[2]))
      changed = changed + 1
    end
  end
end
return changed
