#!/usr/bin/env python3
"""Drives an example server with idem embedded (beast-payments, httplib-payments) over HTTP.

Starts the server with `--port 0`, reads `listening on 127.0.0.1:P` from its output, and
checks the contract's cases through the adapter: one execution per key, replays marked and
dated, 422 for a reused key, 409 while in flight, and no record left by a handler that
threw. Both examples count their handler's runs at GET /stats. Python standard library only.

Usage: example_test.py --server PATH [unittest args]
"""

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
import unittest

SERVER = None


class ExampleServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen([SERVER, "--port", "0"], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        line = cls.proc.stdout.readline().strip()
        prefix = "listening on 127.0.0.1:"
        if not line.startswith(prefix):
            cls.proc.kill()
            raise RuntimeError(f"unexpected first line from {SERVER}: {line!r}")
        cls.port = int(line[len(prefix):])

    @classmethod
    def tearDownClass(cls):
        cls.proc.kill()
        cls.proc.wait(timeout=10)
        cls.proc.stdout.close()

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = None if body is None else json.dumps(body).encode()
            all_headers = {"Content-Type": "application/json"}
            all_headers.update(headers or {})
            conn.request(method, path, body=data, headers=all_headers)
            res = conn.getresponse()
            return res.status, res.headers, res.read().decode()
        finally:
            conn.close()

    def pay(self, key, body, **headers):
        headers = {k.replace("_", "-"): v for k, v in headers.items()}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.request("POST", "/payments", body, headers)

    def executions(self):
        status, _, body = self.request("GET", "/stats")
        self.assertEqual(status, 200)
        return json.loads(body)["executions"]

    def test_first_request_runs_once_and_its_retry_is_replayed(self):
        before = self.executions()
        status, headers, body = self.pay("replay-1", {"amount": 100, "currency": "eur"})
        self.assertEqual(status, 201)
        self.assertIsNone(headers.get("Idempotent-Replayed"))
        self.assertEqual(self.executions(), before + 1)
        # Same request, members reordered: the same operation.
        status2, headers2, body2 = self.pay("replay-1", {"currency": "eur", "amount": 100})
        self.assertEqual(status2, 201)
        self.assertEqual(body2, body)
        self.assertEqual(headers2.get("Idempotent-Replayed"), "true")
        self.assertIsNotNone(headers2.get("Date"))
        self.assertEqual(headers2.get("Content-Type"), "application/json")
        self.assertEqual(self.executions(), before + 1)

    def test_a_different_body_with_the_same_key_is_422(self):
        self.pay("reuse-1", {"amount": 100})
        before = self.executions()
        status, headers, body = self.pay("reuse-1", {"amount": 999})
        self.assertEqual(status, 422)
        self.assertEqual(headers.get("Content-Type"), "application/problem+json")
        self.assertIsNotNone(headers.get("Date"))
        problem = json.loads(body)
        self.assertEqual(problem["type"], "urn:idem:problem:key-reused")
        self.assertEqual(problem["status"], 422)
        self.assertNotIn("999", body)  # never echoes the request
        self.assertEqual(self.executions(), before)

    def test_a_duplicate_while_the_first_is_in_flight_is_409(self):
        results = {}

        def slow():
            results["first"] = self.pay("slow-1", {"amount": 7}, X_Delay_Ms="1500")

        first = threading.Thread(target=slow)
        first.start()
        time.sleep(0.4)
        before = self.executions()
        status, headers, body = self.pay("slow-1", {"amount": 7})
        first.join()
        self.assertEqual(status, 409)
        self.assertEqual(json.loads(body)["type"], "urn:idem:problem:request-in-flight")
        self.assertEqual(headers.get("Retry-After"), "1")
        self.assertIsNotNone(headers.get("Date"))
        self.assertEqual(results["first"][0], 201)
        self.assertEqual(self.executions(), before)
        # Once the first completed, the duplicate is a replay of it.
        status, headers, body = self.pay("slow-1", {"amount": 7})
        self.assertEqual(status, 201)
        self.assertEqual(headers.get("Idempotent-Replayed"), "true")
        self.assertEqual(body, results["first"][2])

    def test_a_handler_that_throws_leaves_no_record_so_the_retry_executes(self):
        before = self.executions()
        status, _, _ = self.pay("fail-1", {"amount": 3}, X_Fail="1")
        self.assertEqual(status, 500)
        self.assertEqual(self.executions(), before + 1)
        status, headers, body = self.pay("fail-1", {"amount": 3})
        self.assertEqual(status, 201)
        self.assertIsNone(headers.get("Idempotent-Replayed"))
        self.assertEqual(self.executions(), before + 2)
        status, headers, body2 = self.pay("fail-1", {"amount": 3})
        self.assertEqual(headers.get("Idempotent-Replayed"), "true")
        self.assertEqual(body2, body)
        self.assertEqual(self.executions(), before + 2)

    def test_requests_without_a_key_run_every_time(self):
        before = self.executions()
        self.assertEqual(self.pay(None, {"amount": 1})[0], 201)
        self.assertEqual(self.pay(None, {"amount": 1})[0], 201)
        self.assertEqual(self.executions(), before + 2)

    def test_an_invalid_key_is_400(self):
        before = self.executions()
        status, headers, body = self.pay("x" * 256, {"amount": 1})
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["type"], "urn:idem:problem:invalid-key")
        self.assertEqual(self.executions(), before)


def main():
    global SERVER
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    args, rest = parser.parse_known_args()
    SERVER = args.server
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
