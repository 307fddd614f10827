-- wrk script: POST /api/v1/login with a JSON body (username and password after `--`, default
-- bob/foobared), tallying the response status codes like header.lua:
--   wrk -t2 -c16 -d10s --latency -s bench/login.lua http://127.0.0.1:8000/api/v1/login -- bob foobared
-- Use the correct password: failed logins are throttled (429 after a few), successful ones are not.
-- Every successful request creates a session document in Redis (idle TTL, default 30 min).
local threads = {}

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local function json_string(s)
  local escaped = s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end)
  return '"' .. escaped .. '"'
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
  local user = args[1] or "bob"
  local password = args[2] or "foobared"
  wrk.body = '{"username":' .. json_string(user) .. ',"password":' .. json_string(password) .. '}'
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("codes") or {}) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, status .. "=" .. n)
  end
  table.sort(parts)
  io.write("status codes: " .. table.concat(parts, " ") .. "\n")
end
