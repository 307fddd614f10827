-- wrk script: POST /api/v1/login with a JSON body (username and password after `--`, default
-- bob/foobared), tallying the response status codes like header.lua:
--   wrk -t2 -c16 -d10s --latency -s bench/login.lua http://127.0.0.1:8000/api/v1/login -- bob foobared
-- Use the correct password: failed logins are throttled (429 after a few), successful ones are not.
-- Every successful request creates a session document in Redis (idle TTL, default 30 min).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "status_codes.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local function json_string(s)
  local escaped = s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end)
  return '"' .. escaped .. '"'
end

function init(args)
  codes = {}
  local user = args[1] or "bob"
  local password = args[2] or "foobared"
  wrk.body = '{"username":' .. json_string(user) .. ',"password":' .. json_string(password) .. '}'
end
