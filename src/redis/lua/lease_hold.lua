-- Takes the lease KEYS[1] for holder ARGV[1] when it is free, or renews it when ARGV[1] holds
-- it, for ARGV[2] ms. 1 while ARGV[1] holds it, 0 when another does.
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
