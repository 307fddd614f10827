-- wrk script: adds one request header given after `--`, and tallies the response status codes.
--   wrk -t2 -c64 -d10s --latency -s bench/header.lua http://127.0.0.1:8000/api/v1/me -- Authorization "Bearer <token>"
--   wrk -t2 -c64 -d10s --latency -s bench/header.lua http://127.0.0.1:8000/dashboard -- Cookie "redbank=<token>"
-- The request itself is static (built once per thread after init); the status-code tally
-- (see status_codes.lua) is printed at the end.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "status_codes.lua")

function init(args)
  codes = {}
  if #args >= 2 then
    wrk.headers[args[1]] = args[2]
  end
end
