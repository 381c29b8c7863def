-- POST /payments with one fixed Idempotency-Key: after the first request (run.sh sends
-- it before measuring) every request is a replay from the store.
wrk.method = "POST"
wrk.path = "/payments"
wrk.body = '{"amount":1000,"currency":"eur"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Idempotency-Key"] = os.getenv("IDEM_BENCH_KEY") or "bench-replay"
