-- wrk script for make bench: the request to send, from BENCH_* environment variables, and a JSON report
-- with completions per second (wrk itself reports none while a server hangs).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  started = os.time()
  completions = {}
  sent = 0
  method = os.getenv("BENCH_METHOD") or "GET"
  body = os.getenv("BENCH_BODY")
  if body == "" then body = nil end
  paths = {}
  for path in string.gmatch(os.getenv("BENCH_PATHS") or "/", "%S+") do
    table.insert(paths, path)
  end
  headers = {}
  local token = os.getenv("BENCH_TOKEN") or ""
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  local content_type = os.getenv("BENCH_CONTENT_TYPE") or ""
  if content_type ~= "" then headers["Content-Type"] = content_type end
end

function request()
  sent = sent + 1
  return wrk.format(method, paths[(sent % #paths) + 1], headers, body)
end

function response(status, headers, body)
  local second = os.time()
  completions[second] = (completions[second] or 0) + 1
end

function done(summary, latency, requests)
  local started_at, per_second = nil, {}
  for _, thread in ipairs(threads) do
    local start = thread:get("started")
    if started_at == nil or start < started_at then started_at = start end
    for second, count in pairs(thread:get("completions")) do
      per_second[second] = (per_second[second] or 0) + count
    end
  end
  local counts = {}
  local seconds = math.floor(summary.duration / 1000000)
  for offset = 0, seconds - 1 do
    table.insert(counts, tostring(per_second[started_at + offset] or 0))
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non_2xx": %d, '
      .. '"errors": %d, "per_second": [%s]}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), errors.status,
    errors.connect + errors.read + errors.write + errors.timeout, table.concat(counts, ", ")
  ))
end
