-- POST /payments without an Idempotency-Key: for nginx, and idem-gateway's pass-through.
wrk.method = "POST"
wrk.path = "/payments"
wrk.body = '{"amount":1000,"currency":"eur"}'
wrk.headers["Content-Type"] = "application/json"
