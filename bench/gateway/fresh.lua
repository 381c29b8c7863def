-- POST /payments with a fresh Idempotency-Key on every request: each one is an original
-- (stored, then forwarded). Keys are <run>-<thread>-<counter>, unique across threads
-- and across runs against a durable store.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local prefix
local counter = 0
local headers = { ["Content-Type"] = "application/json" }
local body = '{"amount":1000,"currency":"eur"}'

function init(args)
  prefix = string.format("bench-%d-%d-", os.time(), thread_id)
end

function request()
  counter = counter + 1
  headers["Idempotency-Key"] = prefix .. counter
  return wrk.format("POST", "/payments", headers, body)
end
