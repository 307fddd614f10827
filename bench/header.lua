-- wrk script: adds one request header given after `--`, and tallies the response status codes.
--   wrk -t2 -c64 -d10s --latency -s bench/header.lua http://127.0.0.1:8000/api/v1/me -- Authorization "Bearer <token>"
--   wrk -t2 -c64 -d10s --latency -s bench/header.lua http://127.0.0.1:8000/dashboard -- Cookie "redbank=<token>"
-- The request itself is static (built once per thread after init). At the end it prints
-- `status codes: 200=N 503=M …` (wrk alone only counts "Non-2xx or 3xx", and a 3xx — e.g. a redirect
-- to /login — would pass as a success).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
  if #args >= 2 then
    wrk.headers[args[1]] = args[2]
  end
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
