-- Shared by the wrk scripts here: tallies response status codes per thread and prints
-- `status codes: 200=N 503=M …` at the end (wrk alone only counts "Non-2xx or 3xx", and a 3xx —
-- e.g. a redirect to /login — would pass as a success). The including script's `init` must set
-- `codes = {}`.
threads = {}

function setup(thread)
  table.insert(threads, thread)
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
