#!/usr/bin/env python3
"""Black-box tests of idem-gateway against /shared/docs/contract.md (sections 2-8).

Usage:
  gateway_test.py --gateway build/apps/gateway/idem-gateway [--store memory|lmdb|redis|SPEC]
                  [unittest arguments, e.g. a class name: DefaultsTest]
  gateway_test.py --list-classes

Each test class runs its own gateway (with its own config and a fresh store) in front of
one shared test upstream (upstream.py); keys and paths are unique per test, so counts
at the upstream tell exactly how often a request was executed.
"""

import argparse
import concurrent.futures
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as h  # noqa: E402

UPSTREAM = None
OLD_DATE = "Mon, 01 Jan 2001 00:00:00 GMT"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade"}
PROBLEM_BASE = "urn:idem:problem:"


def setUpModule():
    global UPSTREAM
    UPSTREAM = h.Upstream()


def tearDownModule():
    if UPSTREAM is not None:
        UPSTREAM.stop()


def key():
    return h.unique("k")


def path(prefix="/pay"):
    return "%s/%s" % (prefix, uuid.uuid4().hex)


def random_ulid():
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
    return random.choice("01234567") + "".join(random.choice(alphabet) for _ in range(25))


class GatewayCase(unittest.TestCase):
    """A test class with its own gateway, started from `settings`, `routes` and `args`."""

    settings = None
    routes = ()
    args = ()

    @classmethod
    def setUpClass(cls):
        cls.gw = h.Gateway(UPSTREAM.url, cls.settings, cls.routes, extra_args=cls.args)

    @classmethod
    def tearDownClass(cls):
        code = cls.gw.stop()
        if code != 0:
            raise AssertionError("idem-gateway exited with %r on SIGTERM, expected 0:\n%s" %
                                 (code, cls.gw.output()[-3000:]))

    # -- helpers

    def count(self, key=None, path=None):
        return UPSTREAM.count(key=key, path=path)

    def wait_executed(self, key=None, path=None, n=1, timeout=5.0):
        """Waits until the upstream has started executing the request `n` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(key=key, path=path) >= n:
                return
            time.sleep(0.02)
        self.fail("the upstream never executed %s" % (key or path))

    def assertOriginal(self, r, status=None, replay_header="Idempotent-Replayed"):
        if status is not None:
            self.assertEqual(r.status, status, r)
        self.assertIsNone(r.header(replay_header), "an original is not marked as a replay")
        self.assertIsNotNone(r.header("X-Upstream-Id"), "the upstream's answer: %r" % r)

    def assertReplayOf(self, replay, original, replay_header="Idempotent-Replayed",
                       excluded=("set-cookie",)):
        """`replay` replays `original`: same status, body bytes and end-to-end headers,
        plus the replay header; no Date of the original, no excluded headers."""
        self.assertEqual(replay.status, original.status, replay)
        self.assertEqual(replay.body, original.body, "same body bytes")
        self.assertEqual(replay.header(replay_header), "true", replay)
        skip = HOP_BY_HOP | {"date", "content-length", replay_header.lower()} | set(excluded)
        names = {k.lower() for k, _ in original.headers} - skip
        for name in names:
            self.assertEqual(replay.header_all(name), original.header_all(name),
                             "header %s replayed as sent" % name)
        for name in excluded:
            self.assertEqual(replay.header_all(name), [], "%s is not replayed" % name)
        date = replay.header("Date")
        self.assertIsNotNone(date, "a replay carries a fresh Date")
        self.assertNotEqual(date, OLD_DATE, "the original's Date is not replayed")

    def assertProblem(self, r, status, name, base=PROBLEM_BASE):
        self.assertEqual(r.status, status, r)
        content_type = (r.header("Content-Type") or "").split(";")[0].strip().lower()
        self.assertEqual(content_type, "application/problem+json", r)
        doc = r.json()
        self.assertEqual(doc.get("type"), base + name, doc)
        self.assertEqual(doc.get("status"), status, doc)
        self.assertIsInstance(doc.get("title"), str, doc)
        self.assertTrue(doc["title"], doc)
        self.assertIsInstance(doc.get("detail"), str, doc)
        self.assertIsNone(r.header("Idempotent-Replayed"), "a problem is not a replay")
        self.assertIsNone(r.header("X-Upstream-Id"), "idem answered, not the upstream")
        return doc

    def post(self, path, body=None, headers=(), key=None, **kwargs):
        return self.gw.post(path, body if body is not None else {"amount": 1000}, headers,
                            key, **kwargs)


# =======================================================================================
# Section 3 with the default settings


class DefaultsTest(GatewayCase):
    def test_no_key_passes_through_nothing_stored(self):
        p = path("/nokey")
        first = self.post(p)
        second = self.post(p)
        self.assertOriginal(first, 200)
        self.assertOriginal(second, 200)
        self.assertNotEqual(first.header("X-Upstream-Id"), second.header("X-Upstream-Id"))
        self.assertEqual(self.count(path=p), 2)

    def test_first_request_forwarded_as_the_upstream_answered(self):
        k = key()
        r = self.post(path(), {"amount": 1}, key=k, headers=[
            ("X-Test-Status", "201"), ("X-Test-Header", "Location: /payments/42"),
            ("X-Test-Header", "X-Foo: bar"), ("X-Test-Set-Cookie", "session=abc")])
        self.assertOriginal(r, 201)
        self.assertEqual(r.header("Location"), "/payments/42")
        self.assertEqual(r.header("X-Foo"), "bar")
        self.assertEqual(r.header("Set-Cookie"), "session=abc")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.json()["body"], '{"amount": 1}', "the body reaches the upstream")
        self.assertEqual(self.count(key=k), 1)

    def test_key_forwarded_unchanged(self):
        for value in ("tok-" + uuid.uuid4().hex, '"sf-%s"' % uuid.uuid4().hex):
            r = self.post(path(), key=value)
            self.assertOriginal(r, 200)
            self.assertEqual(r.json()["key"], value, "the upstream sees the key as sent")
            seen = UPSTREAM.requests(value)
            self.assertEqual(len(seen), 1)
            keys = [v for k, v in seen[0]["headers"] if k.lower() == "idempotency-key"]
            self.assertEqual(keys, [value])

    def test_replay_same_status_body_and_end_to_end_headers(self):
        k = key()
        headers = [("X-Test-Status", "201"), ("X-Test-Header", "Location: /payments/7"),
                   ("X-Test-Header", "X-Foo: bar"), ("X-Test-Header", "X-Multi: one"),
                   ("X-Test-Header", "X-Multi: two"), ("X-Test-Set-Cookie", "sid=1"),
                   ("X-Test-Date", OLD_DATE)]
        p = path()
        original = self.post(p, {"amount": 5}, headers, key=k)
        self.assertOriginal(original, 201)
        self.assertEqual(original.header("Set-Cookie"), "sid=1")
        replay = self.post(p, {"amount": 5}, headers, key=k)
        self.assertReplayOf(replay, original)
        self.assertEqual(replay.header("X-Upstream-Id"), original.header("X-Upstream-Id"))
        self.assertEqual(replay.header_all("X-Multi"), ["one", "two"])
        self.assertNotIn("timeout=60", replay.header_all("Keep-Alive"),
                         "hop-by-hop headers are not replayed")
        again = self.post(p, {"amount": 5}, key=k)  # X-Test-* headers are not fingerprinted
        self.assertReplayOf(again, original)
        self.assertEqual(self.count(key=k), 1)

    def test_original_never_marked_as_replay_even_if_the_upstream_says_so(self):
        k, p = key(), path()
        hdrs = [("X-Test-Header", "Idempotent-Replayed: true")]
        original = self.post(p, key=k, headers=hdrs)
        self.assertEqual(original.status, 200, original)
        self.assertEqual(original.header_all("Idempotent-Replayed"), [],
                         "originals never carry Idempotent-Replayed: true")
        replay = self.post(p, key=k, headers=hdrs)
        self.assertEqual(replay.header_all("Idempotent-Replayed"), ["true"], replay)

    def test_record_completed_once_the_response_is_captured(self):
        """A client that reads its response slowly does not hold the record in flight."""
        k, p = key(), path()
        s = h.raw_connect(self.gw.port, timeout=5)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\n"
                       "X-Test-Body-Bytes: 3000000\r\nContent-Length: 2\r\n\r\n{}"
                       % (p, k)).encode())
            s.recv(100)
            time.sleep(0.5)
            retry = self.post(p, b"{}", key=k)
        finally:
            s.close()
        self.assertEqual(retry.status, 200, retry)
        self.assertEqual(retry.header("Idempotent-Replayed"), "true")
        self.assertEqual(len(retry.body), 3000000)
        self.assertEqual(self.count(key=k), 1)

    def test_replay_of_a_chunked_response(self):
        k = key()
        p = path()
        original = self.post(p, key=k, headers=[("X-Test-Chunked", "1"),
                                                 ("X-Test-Body-Bytes", "200000")])
        self.assertOriginal(original, 200)
        self.assertEqual(len(original.body), 200000)
        replay = self.post(p, key=k)
        self.assertReplayOf(replay, original)
        self.assertEqual(self.count(key=k), 1)

    def test_replay_on_the_same_keep_alive_connection(self):
        import http.client
        k = key()
        p = path()
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
        try:
            answers = []
            for body in (b'{"a":1}', b'{"a":1}', b'{"a":2}', b'{"a":1}'):
                conn.request("POST", p, body, {"Idempotency-Key": k,
                                               "Content-Type": "application/json"})
                r = conn.getresponse()
                answers.append(h.Response(r.status, r.reason, r.getheaders(), r.read()))
        finally:
            conn.close()
        self.assertOriginal(answers[0], 200)
        self.assertReplayOf(answers[1], answers[0])
        self.assertProblem(answers[2], 422, "key-reused")
        self.assertReplayOf(answers[3], answers[0])
        self.assertEqual(self.count(key=k), 1)

    def test_statuses_not_stored_execute_again(self):
        for status in (500, 502, 503, 504, 408, 409, 425, 429):
            with self.subTest(status=status):
                k = key()
                p = path()
                first = self.post(p, key=k, headers=[("X-Test-Status", str(status))])
                self.assertOriginal(first, status)
                second = self.post(p, key=k, headers=[("X-Test-Status", str(status))])
                self.assertOriginal(second, status)
                self.assertNotEqual(first.header("X-Upstream-Id"),
                                    second.header("X-Upstream-Id"))
                self.assertEqual(self.count(key=k), 2)

    def test_statuses_stored_are_replayed(self):
        for status in (200, 201, 202, 204, 301, 400, 404, 410, 422, 499):
            with self.subTest(status=status):
                k = key()
                p = path()
                first = self.post(p, key=k, headers=[("X-Test-Status", str(status))])
                self.assertOriginal(first, status)
                second = self.post(p, key=k)
                self.assertReplayOf(second, first)
                self.assertEqual(self.count(key=k), 1)

    def test_different_body_is_422_key_reused(self):
        k = key()
        p = path()
        first = self.post(p, {"amount": 1}, key=k)
        self.assertOriginal(first, 200)
        secret = "SECRET-" + uuid.uuid4().hex
        r = self.post(p, {"amount": 2, "note": secret}, key=k)
        doc = self.assertProblem(r, 422, "key-reused")
        self.assertNotIn(secret.encode(), r.body, "no problem echoes the request body")
        self.assertNotIn(first.header("X-Upstream-Id").encode(), r.body,
                         "no problem echoes the stored response")
        self.assertNotIn("original_status", doc)
        self.assertEqual(self.count(key=k), 1)

    def test_different_path_method_or_query_is_422(self):
        k = key()
        p = path()
        self.assertOriginal(self.post(p + "?a=1", key=k), 200)
        self.assertProblem(self.post(p + "x?a=1", key=k), 422, "key-reused")
        self.assertProblem(self.post(p + "?a=2", key=k), 422, "key-reused")
        self.assertProblem(self.gw.request("PATCH", p + "?a=1", {"amount": 1000}, key=k), 422,
                           "key-reused")
        self.assertEqual(self.count(key=k), 1)

    def test_in_flight_duplicate_is_409_with_retry_after(self):
        k = key()
        p = path()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(self.post, p, None, [("X-Test-Delay-Ms", "1200")], k)
            self.wait_executed(key=k)
            r = self.post(p, key=k)
            self.assertProblem(r, 409, "request-in-flight")
            retry_after = r.header("Retry-After")
            self.assertIsNotNone(retry_after, "request-in-flight carries Retry-After")
            self.assertTrue(retry_after.strip().isdigit(), retry_after)
            original = slow.result(10)
        self.assertOriginal(original, 200)
        self.assertReplayOf(self.post(p, key=k), original)
        self.assertEqual(self.count(key=k), 1)

    def test_get_with_key_passes_through(self):
        k = key()
        p = path("/things")
        a = self.gw.request("GET", p, key=k)
        b = self.gw.request("GET", p, key=k)
        self.assertOriginal(a, 200)
        self.assertOriginal(b, 200)
        self.assertEqual(self.count(key=k), 2)

    def test_put_and_delete_not_covered_by_default(self):
        for method in ("PUT", "DELETE"):
            with self.subTest(method=method):
                k = key()
                p = path()
                self.assertOriginal(self.gw.request(method, p, {"a": 1}, key=k), 200)
                self.assertOriginal(self.gw.request(method, p, {"a": 1}, key=k), 200)
                self.assertEqual(self.count(key=k), 2)

    def test_patch_is_covered(self):
        k = key()
        p = path()
        first = self.gw.request("PATCH", p, {"a": 1}, key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.gw.request("PATCH", p, {"a": 1}, key=k), first)
        self.assertEqual(self.count(key=k), 1)

    def test_uncovered_method_with_invalid_key_passes_through(self):
        p = path()
        r = self.gw.request("GET", p, key="has space")
        self.assertOriginal(r, 200)
        self.assertEqual(self.count(path=p), 1)

    def test_body_over_default_max_request_bytes_is_413(self):
        k = key()
        p = path()
        size = (10 << 20) + 1
        s = h.raw_connect(self.gw.port, timeout=10)
        try:
            s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\n"
                       "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                       % (p, k, size)).encode())
            chunk = b"x" * 65536
            sent = 0
            try:
                while sent < size:
                    n = min(len(chunk), size - sent)
                    s.sendall(chunk[:n])
                    sent += n
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway may answer and close before reading it all
            data, _ = h.read_until_close(s)
        finally:
            s.close()
        r = h.parse_raw_response(data)
        self.assertIsNotNone(r, data[:200])
        self.assertProblem(r, 413, "body-too-large")
        self.assertEqual(self.count(path=p), 0)
        # exactly at the limit is fine
        r = self.post(p, b"y" * (10 << 20), key=key(),
                      headers=[("Content-Type", "application/octet-stream")], timeout=30)
        self.assertOriginal(r, 200)

    def test_response_over_default_max_response_bytes(self):
        k = key()
        p = path()
        size = 5000000
        original = self.post(p, key=k, headers=[("X-Test-Body-Bytes", str(size)),
                                                 ("X-Test-Status", "201")], timeout=30)
        self.assertOriginal(original, 201)
        self.assertEqual(len(original.body), size, "the client gets the whole response")
        self.assertTrue(original.body.startswith(original.header("X-Upstream-Id").encode()))
        replay = self.post(p, key=k)
        doc = self.assertProblem(replay, 502, "response-not-stored")
        self.assertEqual(doc.get("original_status"), 201)
        self.assertNotIn(original.header("X-Upstream-Id").encode(), replay.body)
        self.assertEqual(self.count(key=k), 1, "never executed again within ttl")

    def test_chunked_request_body_same_request_as_content_length(self):
        k = key()
        p = path()
        body = b'{"amount": 42}'
        first = self.post(p, body, [("Content-Type", "application/json")], key=k)
        self.assertOriginal(first, 200)
        s = h.raw_connect(self.gw.port)
        try:
            s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\n"
                       "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                       "Connection: close\r\n\r\n" % (p, k)).encode() +
                      b"5\r\n" + body[:5] + b"\r\n" + b"%x\r\n" % (len(body) - 5) + body[5:] +
                      b"\r\n0\r\n\r\n")
            data, _ = h.read_until_close(s)
        finally:
            s.close()
        replay = h.parse_raw_response(data)
        self.assertIsNotNone(replay, data[:200])
        self.assertEqual(replay.status, 200, replay)
        self.assertEqual(replay.header("Idempotent-Replayed"), "true")
        self.assertEqual(self.count(key=k), 1)


class KeyRulesTest(GatewayCase):
    """Contract section 4 with key_format = any."""

    def assertInvalid(self, headers, body=None):
        p = path()
        r = self.gw.post(p, body or {"amount": 1}, headers)
        self.assertProblem(r, 400, "invalid-key")
        self.assertEqual(self.count(path=p), 0, "an invalid key is never forwarded")

    def test_sf_string_and_token_name_the_same_key(self):
        k = key()
        p = path()
        first = self.post(p, key='"%s"' % k, headers=[("X-Test-Tag", k)])
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, key=k), first)
        self.assertReplayOf(self.post(p, key='"%s"' % k), first)
        self.assertEqual(self.count(key=k), 1)

    def test_length_limits(self):
        p = path()
        k255 = uuid.uuid4().hex + "x" * (255 - 32)
        first = self.post(p, key=k255)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, key=k255), first)
        self.assertReplayOf(self.post(p, key='"%s"' % k255), first)
        self.assertInvalid([("Idempotency-Key", k255 + "y")])
        self.assertInvalid([("Idempotency-Key", '"%s"' % (k255 + "y"))])
        self.assertInvalid([("Idempotency-Key", "")])
        self.assertInvalid([("Idempotency-Key", '""')])

    def test_characters(self):
        for value in ("a b", '"a b"', "caf\u00e9", "tab\there", '"caf\u00e9"'):
            with self.subTest(value=value):
                self.assertInvalid([("Idempotency-Key", value)])
        # every printable ASCII character except space is allowed (quotes and backslashes
        # need the SF string form when the key is quoted)
        p = path()
        k = "!#$%&'()*+,-./:;<=>?@[]^_`{|}~" + uuid.uuid4().hex
        self.assertOriginal(self.post(p, key=k), 200)
        self.assertEqual(self.post(p, key=k).header("Idempotent-Replayed"), "true")

    def test_duplicate_header_is_invalid(self):
        self.assertInvalid([("Idempotency-Key", key()), ("Idempotency-Key", key())])
        same = key()
        self.assertInvalid([("Idempotency-Key", same), ("Idempotency-Key", same)])

    def test_key_header_name_is_case_insensitive(self):
        k = key()
        p = path()
        first = self.post(p, headers=[("idempotency-key", k)])
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, headers=[("IDEMPOTENCY-KEY", k)]), first)


class KeyFormatTest(unittest.TestCase):
    """key_format = uuid, ulid and a regular expression, each a gateway of its own."""

    @classmethod
    def setUpClass(cls):
        cls.gateways = {}
        for name, fmt in (("uuid", "uuid"), ("ulid", "ulid"), ("regex", "^ord_[0-9]{4}$")):
            cls.gateways[name] = h.Gateway(UPSTREAM.url, {"key_format": fmt})

    @classmethod
    def tearDownClass(cls):
        codes = {name: gw.stop() for name, gw in cls.gateways.items()}
        if any(code != 0 for code in codes.values()):
            raise AssertionError("exit codes on SIGTERM: %r" % codes)

    def check(self, gw, valid, invalid):
        for k in valid:
            p = path()
            r = gw.post(p, {"a": 1}, key=k)
            self.assertEqual(r.status, 200, (k, r))
            self.assertIsNone(r.header("Idempotent-Replayed"))
            self.assertEqual(gw.post(p, {"a": 1}, key=k).header("Idempotent-Replayed"), "true")
        for k in invalid:
            p = path()
            r = gw.post(p, {"a": 1}, key=k)
            self.assertEqual(r.status, 400, (k, r))
            self.assertEqual(r.json().get("type"), PROBLEM_BASE + "invalid-key")
            self.assertEqual(UPSTREAM.count(path=p), 0)

    def test_uuid(self):
        u = str(uuid.uuid4())
        self.check(self.gateways["uuid"], [u, '"%s"' % str(uuid.uuid4())],
                   ["not-a-uuid", u.replace("-", ""), u + "0", u[:-1] + "g"])

    def test_ulid(self):
        u = random_ulid()
        self.check(self.gateways["ulid"], [u],
                   [u[:-1], u + "0", u[:-1] + "U", "not-a-ulid", str(uuid.uuid4())])

    def test_regex(self):
        n = "%04d" % random.randrange(10000)
        self.check(self.gateways["regex"], ["ord_" + n],
                   ["ord_12345", "ord_12", "xord_1234", "ord_abcd"])


# =======================================================================================
# Settings that change section 3


class RenamedHeadersTest(GatewayCase):
    settings = {"header": "X-Request-Key", "replay_header": "X-Was-Replayed"}

    def test_renamed_key_and_replay_headers(self):
        k = key()
        p = path()
        hdrs = [("X-Request-Key", k), ("X-Test-Tag", k)]
        first = self.post(p, headers=hdrs)
        self.assertOriginal(first, 200, replay_header="X-Was-Replayed")
        self.assertIsNone(first.header("Idempotent-Replayed"))
        replay = self.post(p, headers=hdrs)
        self.assertReplayOf(replay, first, replay_header="X-Was-Replayed")
        self.assertIsNone(replay.header("Idempotent-Replayed"))
        self.assertEqual(self.count(key=k), 1)
        seen = UPSTREAM.requests(k)[0]["headers"]
        self.assertIn(["X-Request-Key", k], [[a, b] for a, b in seen], "forwarded unchanged")

    def test_default_header_is_no_longer_a_key(self):
        k = key()
        p = path()
        self.assertOriginal(self.post(p, key=k), 200, replay_header="X-Was-Replayed")
        self.assertOriginal(self.post(p, key=k), 200, replay_header="X-Was-Replayed")
        self.assertEqual(self.count(key=k), 2)

    def test_invalid_renamed_key(self):
        p = path()
        r = self.post(p, headers=[("X-Request-Key", "a b")])
        self.assertProblem(r, 400, "invalid-key")
        self.assertEqual(self.count(path=p), 0)


class StoreStatusTest(GatewayCase):
    settings = {"store_status": "2xx,503"}

    def test_store_status_setting(self):
        for status, stored in ((201, True), (503, True), (404, False), (500, False),
                               (409, False)):
            with self.subTest(status=status):
                k = key()
                p = path()
                first = self.post(p, key=k, headers=[("X-Test-Status", str(status))])
                self.assertOriginal(first, status)
                second = self.post(p, key=k, headers=[("X-Test-Status", str(status))])
                if stored:
                    self.assertReplayOf(second, first)
                    self.assertEqual(self.count(key=k), 1)
                else:
                    self.assertOriginal(second, status)
                    self.assertEqual(self.count(key=k), 2)


class MaxResponseBytesTest(GatewayCase):
    settings = {"max_response_bytes": 1000}

    def test_large_response_reaches_client_and_replay_is_502(self):
        for chunked in ("", "1"):
            with self.subTest(chunked=bool(chunked)):
                k = key()
                p = path()
                hdrs = [("X-Test-Body-Bytes", "50000"), ("X-Test-Status", "202")]
                if chunked:
                    hdrs.append(("X-Test-Chunked", "1"))
                original = self.post(p, key=k, headers=hdrs)
                self.assertOriginal(original, 202)
                self.assertEqual(len(original.body), 50000)
                replay = self.post(p, key=k, headers=hdrs)
                doc = self.assertProblem(replay, 502, "response-not-stored")
                self.assertEqual(doc.get("original_status"), 202)
                self.assertEqual(self.count(key=k), 1)

    def test_small_response_still_stored(self):
        k = key()
        p = path()
        first = self.post(p, key=k, headers=[("X-Test-Body-Bytes", "1000")])
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, key=k), first)


class MaxRequestBytesTest(GatewayCase):
    settings = {"max_request_bytes": 1000}

    def test_limit(self):
        p = path()
        ok = self.post(p, b"a" * 1000, [("Content-Type", "text/plain")], key=key())
        self.assertOriginal(ok, 200)
        p = path()
        r = self.post(p, b"a" * 1001, [("Content-Type", "text/plain")], key=key())
        self.assertProblem(r, 413, "body-too-large")
        self.assertEqual(self.count(path=p), 0)

    def test_chunked_body_over_limit(self):
        p = path()
        s = h.raw_connect(self.gw.port)
        try:
            s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n" % (p, key())).encode())
            try:
                for _ in range(4):
                    s.sendall(b"200\r\n" + b"z" * 512 + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            s.settimeout(5)
            data, _ = h.read_until_close(s)
        finally:
            s.close()
        r = h.parse_raw_response(data)
        self.assertIsNotNone(r, data[:200])
        self.assertProblem(r, 413, "body-too-large")
        self.assertEqual(self.count(path=p), 0)


class TtlTest(GatewayCase):
    settings = {"ttl": 1}

    def test_replayed_within_ttl_executes_afresh_after(self):
        k = key()
        p = path()
        first = self.post(p, key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, key=k), first)
        time.sleep(1.3)
        again = self.post(p, key=k)
        self.assertOriginal(again, 200)
        self.assertNotEqual(again.header("X-Upstream-Id"), first.header("X-Upstream-Id"))
        self.assertEqual(self.count(key=k), 2)
        # and the fresh execution is stored in turn
        self.assertReplayOf(self.post(p, key=k), again)


class OnDuplicateRejectTest(GatewayCase):
    settings = {"on_duplicate": "reject"}

    def test_duplicate_is_409_duplicate_request(self):
        k = key()
        p = path()
        self.assertOriginal(self.post(p, key=k), 200)
        r = self.post(p, key=k)
        self.assertProblem(r, 409, "duplicate-request")
        self.assertIsNone(r.header("Retry-After"), "no Retry-After: retrying will not help")
        self.assertEqual(self.count(key=k), 1)

    def test_mismatch_still_422(self):
        k = key()
        p = path()
        self.assertOriginal(self.post(p, {"a": 1}, key=k), 200)
        self.assertProblem(self.post(p, {"a": 2}, key=k), 422, "key-reused")


class ConcurrencyWaitTest(GatewayCase):
    settings = {"concurrency": "wait", "wait_timeout": "5s"}
    routes = [{"path": "/short/**", "wait_timeout": "300ms"},
              {"path": "/strict/**", "on_duplicate": "reject"}]

    def test_waiters_get_the_replay(self):
        k = key()
        p = path()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            first = pool.submit(self.post, p, None, [("X-Test-Delay-Ms", "800")], k)
            self.wait_executed(key=k)
            waiters = [pool.submit(self.post, p, None, (), k) for _ in range(5)]
            original = first.result(10)
            answers = [w.result(10) for w in waiters]
        self.assertOriginal(original, 200)
        for r in answers:
            self.assertReplayOf(r, original)
        self.assertEqual(self.count(key=k), 1)

    def test_50_concurrent_duplicates_one_execution(self):
        k = key()
        p = path()
        results = h.run_parallel(
            lambda: self.post(p, None, [("X-Test-Delay-Ms", "300")], k, timeout=20),
            [()] * 50)
        errors = [r for r in results if isinstance(r, Exception)]
        self.assertEqual(errors, [])
        originals = [r for r in results if r.header("Idempotent-Replayed") is None]
        self.assertEqual(len(originals), 1, [r.status for r in results])
        for r in results:
            if r is not originals[0]:
                self.assertReplayOf(r, originals[0])
        self.assertEqual(self.count(key=k), 1)

    def test_wait_timeout_then_409(self):
        k = key()
        p = path("/short")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(self.post, p, None, [("X-Test-Delay-Ms", "1500")], k)
            self.wait_executed(key=k)
            start = time.monotonic()
            r = self.post(p, key=k)
            waited = time.monotonic() - start
            self.assertProblem(r, 409, "request-in-flight")
            self.assertGreaterEqual(waited, 0.25, "waited for wait_timeout")
            self.assertLess(waited, 1.2, "answered once wait_timeout ran out")
            self.assertOriginal(first.result(10), 200)
        self.assertEqual(self.count(key=k), 1)

    def test_waiters_with_on_duplicate_reject_get_409(self):
        k = key()
        p = path("/strict")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(self.post, p, None, [("X-Test-Delay-Ms", "600")], k)
            self.wait_executed(key=k)
            r = self.post(p, key=k)
            self.assertProblem(r, 409, "duplicate-request")
            self.assertIsNone(r.header("Retry-After"))
            self.assertOriginal(first.result(10), 200)
        self.assertEqual(self.count(key=k), 1)


class ConcurrencyTest(GatewayCase):
    """Default concurrency = reject, under load."""

    def test_50_concurrent_duplicates_one_execution(self):
        k = key()
        p = path()
        results = h.run_parallel(
            lambda: self.post(p, None, [("X-Test-Delay-Ms", "300")], k, timeout=20),
            [()] * 50)
        errors = [r for r in results if isinstance(r, Exception)]
        self.assertEqual(errors, [])
        originals = [r for r in results if r.status == 200 and
                     r.header("Idempotent-Replayed") is None]
        self.assertEqual(len(originals), 1, [r.status for r in results])
        for r in results:
            if r is originals[0]:
                continue
            if r.status == 409:
                self.assertProblem(r, 409, "request-in-flight")
            else:
                self.assertReplayOf(r, originals[0])
        self.assertEqual(self.count(key=k), 1)
        self.assertReplayOf(self.post(p, key=k), originals[0])

    def test_200_distinct_keys_at_once(self):
        keys = [key() for _ in range(200)]
        p = path()
        results = h.run_parallel(
            lambda k: self.post(p, {"k": k}, [("X-Test-Delay-Ms", "100")], k, timeout=30),
            [(k,) for k in keys])
        errors = [r for r in results if isinstance(r, Exception)]
        self.assertEqual(errors, [])
        self.assertEqual([r.status for r in results], [200] * 200)
        for r in results:
            self.assertIsNone(r.header("Idempotent-Replayed"))
        for k in keys:
            self.assertEqual(self.count(key=k), 1, k)
        # and each was stored
        for k in keys[:20]:
            self.assertEqual(self.post(p, {"k": k}, key=k).header("Idempotent-Replayed"),
                             "true")


class ThreadsTest(GatewayCase):
    """--threads 4: duplicates that land on different event loops still meet."""

    args = ("--threads", "4")

    def test_50_concurrent_duplicates_one_execution(self):
        ConcurrencyTest.test_50_concurrent_duplicates_one_execution(self)


class RequireKeyTest(GatewayCase):
    settings = {"require_key": True}

    def test_missing_key_is_400(self):
        p = path()
        r = self.post(p)
        self.assertProblem(r, 400, "missing-key")
        self.assertEqual(self.count(path=p), 0)
        r = self.gw.request("PATCH", p, {"a": 1})
        self.assertProblem(r, 400, "missing-key")
        self.assertEqual(self.count(path=p), 0)

    def test_uncovered_methods_need_no_key(self):
        p = path()
        self.assertOriginal(self.gw.request("GET", p), 200)
        self.assertOriginal(self.gw.request("PUT", p, {"a": 1}), 200)
        self.assertEqual(self.count(path=p), 2)

    def test_with_key_works(self):
        k = key()
        p = path()
        first = self.post(p, key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, key=k), first)


class MethodsTest(GatewayCase):
    settings = {"methods": ["PUT"]}

    def test_methods_setting(self):
        k = key()
        p = path()
        first = self.gw.request("PUT", p, {"a": 1}, key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.gw.request("PUT", p, {"a": 1}, key=k), first)
        self.assertEqual(self.count(key=k), 1)
        k = key()
        self.assertOriginal(self.post(p, key=k), 200)
        self.assertOriginal(self.post(p, key=k), 200)
        self.assertEqual(self.count(key=k), 2, "POST is not covered any more")


class RoutesTest(GatewayCase):
    routes = [
        {"path": "/off/**", "enabled": False},
        {"path": "/short/**", "ttl": 1},
        {"path": "/strict/{id}", "on_duplicate": "reject"},
        {"path": "/must/**", "require_key": True},
        {"path": "/put/**", "methods": ["PUT"]},
    ]

    def test_route_switched_off_passes_through(self):
        k = key()
        p = path("/off")
        self.assertOriginal(self.post(p, key=k), 200)
        self.assertOriginal(self.post(p, key=k), 200)
        self.assertEqual(self.count(key=k), 2)
        p = path("/off")
        r = self.post(p, key="not a valid key")
        self.assertOriginal(r, 200)

    def test_absolute_form_target_is_the_same_request_as_origin_form(self):
        # RFC 9112 section 3.2.2: routes, fingerprints and the upstream see origin-form,
        # and the target's authority is the Host.
        k = key()
        p = path("/off")
        self.assertOriginal(self.post("http://api.example" + p, key=k), 200)
        self.assertOriginal(self.post(p, key=k), 200)
        self.assertEqual(self.count(key=k), 2, "the route applies whichever form names it")
        k = key()
        p = path("/elsewhere")
        first = self.post("HTTP://api.example:8080" + p + "?a=1", key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p + "?a=1", key=k), first)
        seen = UPSTREAM.requests(k)
        self.assertEqual(len(seen), 1)
        self.assertEqual(seen[0]["path"], p + "?a=1")
        hosts = [v for n, v in seen[0]["headers"] if n.lower() == "host"]
        self.assertEqual(hosts, ["api.example:8080"])
        r = self.post("http://api.example", key=key())
        self.assertOriginal(r, 200)
        self.assertEqual(r.json()["path"], "/")
        k = key()
        self.assertOriginal(self.post("http://api.example:/x", key=k), 200)
        hosts = [v for n, v in UPSTREAM.requests(k)[0]["headers"] if n.lower() == "host"]
        self.assertEqual(hosts, ["api.example"], "an empty port is no port")

    def test_target_that_is_not_a_path_or_http_uri_is_400(self):
        for target in ("ftp://api.example/x", "http://user@api.example/x", "http:///x",
                       "payments", "api.example:443", "http://api.example:x://evil/pay"):
            self.assertProblem(self.post(target, key=key()), 400, "bad-request")

    def test_route_overrides_ttl(self):
        k1, k2 = key(), key()
        p1, p2 = path("/short"), path("/elsewhere")
        first1, first2 = self.post(p1, key=k1), self.post(p2, key=k2)
        self.assertReplayOf(self.post(p1, key=k1), first1)
        time.sleep(1.3)
        self.assertOriginal(self.post(p1, key=k1), 200)
        self.assertReplayOf(self.post(p2, key=k2), first2)
        self.assertEqual(self.count(key=k1), 2)
        self.assertEqual(self.count(key=k2), 1)

    def test_route_overrides_on_duplicate(self):
        k = key()
        p = "/strict/" + uuid.uuid4().hex
        self.assertOriginal(self.post(p, key=k), 200)
        self.assertProblem(self.post(p, key=k), 409, "duplicate-request")
        k = key()
        p = path("/lenient")
        first = self.post(p, key=k)
        self.assertReplayOf(self.post(p, key=k), first)

    def test_route_overrides_require_key(self):
        p = path("/must")
        self.assertProblem(self.post(p), 400, "missing-key")
        self.assertEqual(self.count(path=p), 0)
        p = path("/free")
        self.assertOriginal(self.post(p), 200)

    def test_route_overrides_methods(self):
        k = key()
        p = path("/put")
        first = self.gw.request("PUT", p, {"a": 1}, key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.gw.request("PUT", p, {"a": 1}, key=k), first)
        self.assertEqual(self.count(key=k), 1)
        k = key()  # elsewhere PUT is still not covered
        self.assertOriginal(self.gw.request("PUT", path("/other"), {"a": 1}, key=k), 200)


class ProblemTypeBaseTest(GatewayCase):
    settings = {"problem_type_base": "https://errors.example.com/idem/"}

    def test_problem_type_base(self):
        base = "https://errors.example.com/idem/"
        k = key()
        p = path()
        self.assertOriginal(self.post(p, {"a": 1}, key=k), 200)
        self.assertProblem(self.post(p, {"a": 2}, key=k), 422, "key-reused", base=base)
        self.assertProblem(self.post(p, key="a b"), 400, "invalid-key", base=base)


class ReplayExcludeHeadersTest(GatewayCase):
    settings = {"replay_exclude_headers": ["x-secret", "X-Other"]}

    def test_setting_replaces_the_default_list(self):
        k = key()
        p = path()
        hdrs = [("X-Test-Header", "X-Secret: s3"), ("X-Test-Header", "x-other: o"),
                ("X-Test-Set-Cookie", "sid=1")]
        first = self.post(p, key=k, headers=hdrs)
        self.assertOriginal(first, 200)
        self.assertEqual(first.header("X-Secret"), "s3")
        replay = self.post(p, key=k)
        self.assertReplayOf(replay, first, excluded=("x-secret", "x-other"))
        self.assertEqual(replay.header("Set-Cookie"), "sid=1",
                         "Set-Cookie is replayed once the list no longer names it")


# =======================================================================================
# Section 4 and 5: scopes; section 6: fingerprints


class ScopeTest(GatewayCase):
    routes = [
        {"path": "/ip/**", "scope": "ip"},
        {"path": "/global/**", "scope": "global"},
        {"path": "/tenant/**", "scope": "header:X-Tenant"},
        {"path": "/r1/**", "scope": "identity+route"},
        {"path": "/r2/**", "scope": "identity+route"},
        {"path": "/ids/**", "identity_headers": ["X-Account"]},
    ]

    def same(self, k, p, a, b, **kw):
        """Sends the request with headers `a` then `b`: the second is a replay."""
        first = self.post(p, headers=a, key=k, **kw.get("first", {}))
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, headers=b, key=k, **kw.get("second", {})), first)
        self.assertEqual(self.count(key=k), 1)

    def independent(self, k, p, a, b, **kw):
        """Sends the request with headers `a` then `b`: both execute."""
        self.assertOriginal(self.post(p, headers=a, key=k, **kw.get("first", {})), 200)
        self.assertOriginal(self.post(p, headers=b, key=k, **kw.get("second", {})), 200)
        self.assertEqual(self.count(key=k), 2)

    def test_identity_authorization(self):
        k, p = key(), path()
        self.independent(k, p, [("Authorization", "Bearer tok_a")],
                         [("Authorization", "Bearer tok_b")])
        first_a = self.post(p, headers=[("Authorization", "Bearer tok_a")], key=k)
        self.assertEqual(first_a.header("Idempotent-Replayed"), "true")
        self.assertEqual(self.count(key=k), 2)
        self.independent(key(), path(), [("Authorization", "Bearer tok_a")], [])

    def test_identity_api_key(self):
        self.independent(key(), path(), [("X-Api-Key", "ak_1")], [("X-Api-Key", "ak_2")])
        self.same(key(), path(), [("X-Api-Key", "ak_1")], [("X-Api-Key", "ak_1")])

    def test_anonymous_requests_share_a_scope(self):
        self.same(key(), path(), [], [])

    def test_identity_headers_setting(self):
        self.independent(key(), path("/ids"), [("X-Account", "a1")], [("X-Account", "a2")])
        self.same(key(), path("/ids"), [("X-Account", "a1"), ("X-Api-Key", "x")],
                  [("X-Account", "a1"), ("X-Api-Key", "y")])

    def test_ip(self):
        self.independent(key(), path("/ip"), [], [],
                         first={"source": "127.0.0.1"}, second={"source": "127.0.0.2"})
        self.same(key(), path("/ip"), [("Authorization", "Bearer a")],
                  [("Authorization", "Bearer b")],
                  first={"source": "127.0.0.3"}, second={"source": "127.0.0.3"})

    def test_ip_ignores_untrusted_x_forwarded_for(self):
        self.same(key(), path("/ip"), [("X-Forwarded-For", "10.0.0.1")],
                  [("X-Forwarded-For", "10.0.0.2")])

    def test_global(self):
        self.same(key(), path("/global"), [("Authorization", "Bearer a")],
                  [("Authorization", "Bearer b"), ("X-Api-Key", "z")])

    def test_header_scope(self):
        self.independent(key(), path("/tenant"), [("X-Tenant", "t1")], [("X-Tenant", "t2")])
        self.same(key(), path("/tenant"), [("X-Tenant", "t1"), ("Authorization", "a")],
                  [("X-Tenant", "t1"), ("Authorization", "b")])

    def test_identity_plus_route(self):
        k = key()
        tail = uuid.uuid4().hex
        auth = [("Authorization", "Bearer tok_r")]
        self.assertOriginal(self.post("/r1/" + tail, headers=auth, key=k), 200)
        self.assertOriginal(self.post("/r2/" + tail, headers=auth, key=k), 200)
        self.assertEqual(self.count(key=k), 2)
        self.assertEqual(self.post("/r1/" + tail, headers=auth, key=k)
                         .header("Idempotent-Replayed"), "true")
        self.independent(key(), path("/r1"), [("Authorization", "Bearer a")],
                         [("Authorization", "Bearer b")])

    def test_scope_kinds_never_collide(self):
        """The same key and scope value under two kinds of scope are two records."""
        for name, first, second in (
                ("ip/identity", ("/ip", []), ("/pay", [("Authorization", "127.0.0.1")])),
                ("header/identity", ("/tenant", [("X-Tenant", "Bearer z")]),
                 ("/pay", [("Authorization", "Bearer z")])),
                ("global/anonymous", ("/global", []), ("/pay", []))):
            with self.subTest(kinds=name):
                k = key()
                self.assertOriginal(self.post(path(first[0]), headers=first[1], key=k), 200)
                self.assertOriginal(self.post(path(second[0]), headers=second[1], key=k), 200)
                self.assertEqual(self.count(key=k), 2)

    def test_identity_across_routes_is_one_scope(self):
        k = key()
        self.assertOriginal(self.post(path("/a"), key=k), 200)
        self.assertProblem(self.post(path("/b"), key=k), 422, "key-reused")


class FingerprintTest(GatewayCase):
    def assertSame(self, p, first_body, second_body, ct="application/json", p2=None):
        k = key()
        first = self.post(p, first_body, [("Content-Type", ct)], key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p2 or p, second_body, [("Content-Type", ct)], key=k),
                            first)

    def assertDifferent(self, p, first_body, second_body, ct="application/json", p2=None):
        k = key()
        self.assertOriginal(self.post(p, first_body, [("Content-Type", ct)], key=k), 200)
        self.assertProblem(self.post(p2 or p, second_body, [("Content-Type", ct)], key=k), 422,
                           "key-reused")
        self.assertEqual(self.count(key=k), 1)

    def test_json_member_order_and_whitespace(self):
        self.assertSame(path(), b'{"b":1,"a":2}', b'{ "a": 2, "b": 1.0 }')
        self.assertSame(path(), b'{"x":{"b":[1,2],"a":"s"}}', b'{"x":{"a":"s","b":[1,2]}}',
                        ct="application/vnd.api+json; charset=utf-8")
        self.assertDifferent(path(), b'{"b":1,"a":2}', b'{"b":1,"a":3}')
        self.assertDifferent(path(), b'{"a":[1,2]}', b'{"a":[2,1]}')

    def test_rfc_8785_numbers_and_strings(self):
        self.assertSame(path(), b'{"n":100,"s":"\\u00e9"}', '{"s":"\u00e9","n":1e2}'.encode())
        self.assertSame(path(), b'{"n":0.5}', b'{"n":5E-1}')

    def test_large_integers_keep_their_digits(self):
        self.assertDifferent(path(), b'{"n":9007199254740993}', b'{"n":9007199254740992}')

    def test_duplicate_members_are_raw_bytes(self):
        self.assertDifferent(path(), b'{"a":1,"a":1,"b":2}', b'{"b":2,"a":1,"a":1}')

    def test_other_bodies_are_raw_bytes(self):
        self.assertDifferent(path(), b'{"b":1,"a":2}', b'{"a":2,"b":1}', ct="text/plain")
        self.assertDifferent(path(), b'{"b":1,', b'{ "b":1,')
        self.assertSame(path(), b"same bytes", b"same bytes", ct="application/octet-stream")

    def test_form_parameters_sorted(self):
        ct = "application/x-www-form-urlencoded"
        self.assertSame(path(), b"a=1&b=2", b"b=2&a=1", ct=ct)
        self.assertDifferent(path(), b"a=1&b=2", b"a=1&b=3", ct=ct)

    def test_query_parameters_sorted(self):
        p = path()
        self.assertSame(p + "?a=1&b=2", b"{}", b"{}", p2=p + "?b=2&a=1")
        self.assertDifferent(p + "?a=1&b=2", b"{}", b"{}", p2=p + "?a=1&b=3")


class FingerprintSettingsTest(GatewayCase):
    settings = {"fingerprint_ignore": ["/timestamp", "/meta/client_request_id"],
                "fingerprint_headers": ["X-Account"]}

    def test_ignored_members(self):
        k, p = key(), path()
        first = self.post(p, {"amount": 1, "timestamp": "t1",
                              "meta": {"client_request_id": "c1", "keep": 1}}, key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, {"amount": 1, "timestamp": "t2",
                                          "meta": {"client_request_id": "c2", "keep": 1}},
                                      key=k), first)
        self.assertReplayOf(self.post(p, {"amount": 1, "meta": {"keep": 1}}, key=k), first)
        self.assertProblem(self.post(p, {"amount": 1, "timestamp": "t1",
                                         "meta": {"client_request_id": "c1", "keep": 2}},
                                     key=k), 422, "key-reused")
        self.assertEqual(self.count(key=k), 1)

    def test_ignore_does_not_apply_to_duplicate_members(self):
        k, p = key(), path()
        ct = [("Content-Type", "application/json")]
        self.assertOriginal(self.post(p, b'{"a":1,"a":1,"timestamp":1}', ct, key=k), 200)
        self.assertProblem(self.post(p, b'{"a":1,"a":1,"timestamp":2}', ct, key=k), 422,
                           "key-reused")

    def test_fingerprint_headers(self):
        k, p = key(), path()
        first = self.post(p, headers=[("X-Account", "1")], key=k)
        self.assertReplayOf(self.post(p, headers=[("X-Account", "1")], key=k), first)
        self.assertProblem(self.post(p, headers=[("X-Account", "2")], key=k), 422,
                           "key-reused")


# =======================================================================================
# Section 2: the admin API, signals, flags and config


class AdminTest(GatewayCase):
    routes = [{"path": "/strict/**", "on_duplicate": "reject"},
              {"path": "/must/**", "require_key": True},
              {"path": "/tiny/**", "max_request_bytes": 10, "max_response_bytes": 100}]

    def test_healthz_and_readyz(self):
        self.assertEqual(self.gw.admin("GET", "/healthz").status, 200)
        self.assertEqual(self.gw.admin("GET", "/readyz").status, 200)

    def test_admin_is_not_the_public_listener(self):
        before = self.count(path="/healthz")
        r = self.gw.request("GET", "/healthz")
        self.assertIsNotNone(r.header("X-Upstream-Id"), "the public /healthz is the upstream's")
        self.assertEqual(self.count(path="/healthz"), before + 1)
        r = self.gw.request("GET", "/metrics")
        self.assertIsNotNone(r.header("X-Upstream-Id"))

    def test_metrics_count_outcomes(self):
        def delta(outcome, action, expected=1):
            before = self.gw.requests_total(outcome)
            action()
            after = self.gw.requests_total(outcome)
            self.assertEqual(after - before, expected, outcome)

        k, p = key(), path()
        delta("original", lambda: self.post(p, {"a": 1}, key=k))
        delta("replayed", lambda: self.post(p, {"a": 1}, key=k))
        delta("mismatch", lambda: self.post(p, {"a": 2}, key=k))
        delta("passthrough", lambda: self.post(path()))
        delta("passthrough", lambda: self.gw.request("GET", path(), key=key()))
        delta("invalid_key", lambda: self.post(path(), key="a b"))
        delta("missing_key", lambda: self.post(path("/must")))
        delta("too_large", lambda: self.post(path("/tiny"), b"x" * 11, key=key()))
        ks, ps = key(), path("/strict")
        self.post(ps, key=ks)
        delta("duplicate", lambda: self.post(ps, key=ks))

        kc, pc = key(), path()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(self.post, pc, None, [("X-Test-Delay-Ms", "800")], kc)
            self.wait_executed(key=kc)
            delta("conflict", lambda: self.post(pc, key=kc))
            slow.result(10)

        kn, pn = key(), path("/tiny")
        before = self.gw.requests_total("not_stored")
        self.post(pn, b"", [("X-Test-Body-Bytes", "500")], key=kn)
        self.assertProblem(self.post(pn, b"", key=kn), 502, "response-not-stored")
        self.assertGreaterEqual(self.gw.requests_total("not_stored") - before, 1)

    def test_metrics_text_format(self):
        r = self.gw.admin("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue((r.header("Content-Type") or "").startswith("text/plain"), r)
        text = r.body.decode()
        self.assertIn("# TYPE idem_requests_total counter", text)
        families = {name[: -len("_bucket")] for (name, _) in h.parse_prometheus(text)
                    if name.endswith("_bucket")}
        self.assertGreaterEqual(len(families), 2, "store and upstream latency histograms")

    def test_keys_get_and_delete_with_scope(self):
        k, p = key(), path()
        auth = [("Authorization", "Bearer tok_1")]
        first = self.post(p, headers=auth, key=k)
        self.assertOriginal(first, 200)
        r = self.gw.get_key(k, scope="Bearer tok_1")
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"completed", r.body)
        self.assertEqual(self.gw.get_key(k).status, 404, "the anonymous scope has no record")
        self.assertEqual(self.gw.get_key(k, scope="Bearer tok_2").status, 404)
        self.assertReplayOf(self.post(p, headers=auth, key=k), first)

        d = self.gw.delete_key(k, scope="Bearer tok_1")
        self.assertIn(d.status, (200, 204), d)
        self.assertEqual(self.gw.get_key(k, scope="Bearer tok_1").status, 404)
        again = self.post(p, headers=auth, key=k)
        self.assertOriginal(again, 200)
        self.assertNotEqual(again.header("X-Upstream-Id"), first.header("X-Upstream-Id"))
        self.assertEqual(self.count(key=k), 2)
        self.assertEqual(self.gw.delete_key(key()).status, 404)

    def test_keys_with_bad_percent_encoding_is_400(self):
        k = key()
        for target in ("/keys/%zz", "/keys/%s?scope=%%4" % k, "/keys/%s?path=%%zz" % k,
                       "/keys/%s?method=P%%" % k):
            r = self.gw.admin("GET", target)
            self.assertEqual(r.status, 400, (target, r))
            self.assertEqual(r.json()["type"], PROBLEM_BASE + "bad-request")
        # '+' is a character of the value, not a space.
        auth = [("Authorization", "Bearer a+b")]
        self.assertOriginal(self.post(path(), headers=auth, key=k), 200)
        self.assertEqual(self.gw.admin("GET", "/keys/%s?scope=Bearer%%20a+b" % k).status, 200)

    def test_keys_shows_in_flight(self):
        k, p = key(), path()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(self.post, p, None, [("X-Test-Delay-Ms", "800")], k)
            self.wait_executed(key=k)
            r = self.gw.get_key(k)
            self.assertEqual(r.status, 200, r)
            self.assertIn(b"in_flight", r.body)
            slow.result(10)
        r = self.gw.get_key(k)
        self.assertIn(b"completed", r.body)


class IdemctlAdminTest(GatewayCase):
    """`idemctl inspect` and `idemctl flush`: the admin API from the command line."""

    routes = [{"path": "/per-route/**", "scope": "identity+route"}]

    def idemctl(self, *args, admin=None):
        if not h.IDEMCTL:
            self.fail("no idemctl binary: pass --idemctl or set IDEM_IDEMCTL")
        admin = admin or "127.0.0.1:%d" % self.gw.admin_port
        return subprocess.run([h.IDEMCTL, *args, "--admin", admin], capture_output=True,
                              text=True, timeout=30)

    def assertOneLine(self, run, code, words):
        self.assertEqual(run.returncode, code, run)
        self.assertEqual(run.stdout, "", run)
        self.assertEqual(len(run.stderr.splitlines()), 1, run)
        self.assertIn(words, run.stderr)

    def test_inspect_and_flush_a_record_of_a_scope(self):
        k, p = key(), path()
        auth = [("Authorization", "Bearer tok_1")]
        first = self.post(p, headers=auth, key=k)
        self.assertOriginal(first, 200)

        shown = self.idemctl("inspect", "--key", k, "--scope", "Bearer tok_1")
        self.assertEqual(shown.returncode, 0, shown)
        record = json.loads(shown.stdout)
        self.assertEqual(record["state"], "completed")
        self.assertEqual(record["response"]["status"], 200)
        self.assertNotIn("tok_1", shown.stdout, "never the identity")
        self.assertOneLine(self.idemctl("inspect", "--key", k), 1, "no record")

        flushed = self.idemctl("flush", "--key", k, "--scope", "Bearer tok_1")
        self.assertEqual(flushed.returncode, 0, flushed)
        self.assertTrue(json.loads(flushed.stdout)["deleted"])
        self.assertOneLine(self.idemctl("inspect", "--key", k, "--scope", "Bearer tok_1"), 1,
                           "no record")
        self.assertOneLine(self.idemctl("flush", "--key", k, "--scope", "Bearer tok_1"), 1,
                           "no record")
        again = self.post(p, headers=auth, key=k)
        self.assertOriginal(again, 200)
        self.assertEqual(self.count(key=k), 2, "the flushed key executed afresh")

    def test_keys_and_scopes_that_need_percent_encoding(self):
        k = "k/%s?x=%%25+&#" % uuid.uuid4().hex
        auth = [("Authorization", "Bearer a+b/c d")]
        self.assertOriginal(self.post(path(), headers=auth, key=k), 200)
        shown = self.idemctl("inspect", "--key", k, "--scope", "Bearer a+b/c d")
        self.assertEqual(shown.returncode, 0, shown)
        self.assertEqual(json.loads(shown.stdout)["state"], "completed")
        # The quoted form of the header names the same key.
        quoted = self.idemctl("inspect", "--key", '"%s"' % k, "--scope", "Bearer a+b/c d")
        self.assertEqual(quoted.returncode, 0, quoted)

    def test_the_route_picks_the_scope_rule(self):
        k, p = key(), path("/per-route")
        self.assertOriginal(self.post(p, key=k), 200)
        self.assertOneLine(self.idemctl("inspect", "--key", k), 1, "no record")
        shown = self.idemctl("inspect", "--key", k, "--method", "POST", "--path", p)
        self.assertEqual(shown.returncode, 0, shown)
        self.assertEqual(json.loads(shown.stdout)["state"], "completed")

    def test_an_invalid_key_is_the_gateways_problem_on_one_line(self):
        self.assertOneLine(self.idemctl("inspect", "--key", "a b"), 1, "invalid-key")

    def test_an_unreachable_admin_api_is_one_line(self):
        dead = "127.0.0.1:%d" % h.free_port()
        self.assertOneLine(self.idemctl("inspect", "--key", key(), admin=dead), 1,
                           "cannot reach the admin API at " + dead)
        self.assertOneLine(self.idemctl("flush", "--key", key(), admin=dead), 1,
                           "cannot reach")

    def test_bad_flags_exit_2_naming_the_flag(self):
        self.assertOneLine(self.idemctl("inspect", "--key", key(), admin="nope"), 2, "--admin")
        self.assertOneLine(self.idemctl("flush", "--key", key(), admin="h:0"), 2, "--admin")
        self.assertOneLine(self.idemctl("inspect"), 2, "--key")


class SignalTest(unittest.TestCase):
    def test_sigterm_finishes_in_flight_request_and_exits_0(self):
        gw = h.Gateway(UPSTREAM.url)
        try:
            k, p = key(), path()
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                slow = pool.submit(gw.post, p, {"a": 1}, [("X-Test-Delay-Ms", "1500")], k)
                deadline = time.monotonic() + 5
                while UPSTREAM.count(key=k) < 1 and time.monotonic() < deadline:
                    time.sleep(0.02)
                gw.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                with self.assertRaises(OSError, msg="stops accepting on SIGTERM"):
                    h.http_request(gw.port, "POST", path(), b"{}", timeout=2)
                r = slow.result(10)
            self.assertEqual(r.status, 200, r)
            self.assertIsNone(r.header("Idempotent-Replayed"))
            self.assertEqual(gw.proc.wait(10), 0)
        finally:
            gw.stop()

    def test_sigint_exits_0(self):
        gw = h.Gateway(UPSTREAM.url)
        self.assertEqual(gw.stop(signum=signal.SIGINT), 0)

    def test_drain_timeout_bounds_shutdown(self):
        gw = h.Gateway(UPSTREAM.url, {"drain_timeout": "1s"})
        try:
            k = key()
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(lambda: gw.post(path(), {"a": 1}, [("X-Test-Delay-Ms", "8000")], k,
                                            timeout=15))
                deadline = time.monotonic() + 5
                while UPSTREAM.count(key=k) < 1 and time.monotonic() < deadline:
                    time.sleep(0.02)
                start = time.monotonic()
                code = gw.stop(timeout=6)
                self.assertEqual(code, 0)
                self.assertLess(time.monotonic() - start, 4.0, "bounded by drain_timeout")
        finally:
            gw.stop()


    def test_request_cut_short_by_drain_timeout_gives_its_record_back(self):
        if not durable_store():
            self.skipTest("the %s store's records end with the process" % h.STORE)
        store = h.store_spec()  # the same store for both gateways
        gw = h.Gateway(UPSTREAM.url, {"drain_timeout": "1s", "lease": "60s"}, store=store)
        k, p = key(), path()
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(lambda: gw.post(p, {"a": 1}, [("X-Test-Delay-Ms", "8000")], k,
                                            timeout=15))
                deadline = time.monotonic() + 5
                while UPSTREAM.count(key=k) < 1 and time.monotonic() < deadline:
                    time.sleep(0.02)
                self.assertEqual(gw.stop(timeout=6), 0)
        finally:
            gw.stop()
        again = h.Gateway(UPSTREAM.url, {"lease": "60s"}, store=store)
        try:
            # Released, not left in flight for the 60 s lease: the retry runs at once.
            r = again.post(p, {"a": 1}, key=k)
            self.assertEqual(r.status, 200, r)
            self.assertIsNone(r.header("Idempotent-Replayed"))
            self.assertEqual(UPSTREAM.count(key=k), 2)
        finally:
            again.stop()

class CommandLineTest(unittest.TestCase):
    """Bad flags or a bad config file: a one-line error naming the setting, exit 2."""

    def run_gateway(self, args, config=None):
        if config is not None:
            cfg = os.path.join(h.workdir(), "bad-%s.toml" % uuid.uuid4().hex[:8])
            with open(cfg, "w") as f:
                f.write(config)
            args = args + ["--config", cfg]
        try:
            p = subprocess.run([h.GATEWAY] + args, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=4)
        except subprocess.TimeoutExpired:
            self.fail("idem-gateway %r did not exit" % (args,))
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(
            errors="replace")

    def base_args(self):
        return ["--listen", "127.0.0.1:%d" % h.free_port(), "--upstream", UPSTREAM.url,
                "--admin", "127.0.0.1:%d" % h.free_port(), "--store", "memory"]

    def assertRejected(self, code, out, err, name):
        self.assertEqual(code, 2, (out, err))
        lines = [line for line in err.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, "one line: %r" % err)
        self.assertIn(name, lines[0])

    def test_bad_config_settings(self):
        cases = [
            ('concurrency = "sometimes"\n', "concurrency"),
            ('on_duplicate = "maybe"\n', "on_duplicate"),
            ('scope = "nobody"\n', "scope"),
            ('key_format = "(["\n', "key_format"),
            ('store_status = "abc"\n', "store_status"),
            ('ttl = "forever"\n', "ttl"),
            ("ttl = -5\n", "ttl"),
            ('fingerprint_ignore = ["no-slash"]\n', "fingerprint_ignore"),
            ('max_request_bytes = "lots"\n', "max_request_bytes"),
            ('require_key = "yes please"\n', "require_key"),
            ('header_timeout = "soon"\n', "header_timeout"),
            ('trusted_proxies = ["not-an-ip"]\n', "trusted_proxies"),
            ("ttll = 5\n", "ttll"),
            ('durability = "sometimes"\n', "durability"),
            ('redis_key_prefix = "a{b"\n', "redis_key_prefix"),
            ('redis_key_prefix = "a b"\n', "redis_key_prefix"),
            ('redis_password = 5\n', "redis_password"),
            ("redis_replay_cache = -1\n", "redis_replay_cache"),
            ('[[route]]\npath = "/x/**"\nconcurrency = "sometimes"\n', "concurrency"),
        ]
        for config, name in cases:
            with self.subTest(config=config):
                self.assertRejected(*self.run_gateway(self.base_args(), config), name)

    def test_redis_username_without_a_password(self):
        args = self.base_args()
        args[args.index("--store") + 1] = "redis://127.0.0.1:%d" % h.free_port()
        self.assertRejected(*self.run_gateway(args, 'redis_username = "idem"\n'),
                            "redis_username")

    def test_unparsable_or_missing_config(self):
        code, out, err = self.run_gateway(self.base_args(), "ttl = = 1\n[[")
        self.assertEqual(code, 2, (out, err))
        self.assertEqual(len([x for x in err.splitlines() if x.strip()]), 1, err)
        code, out, err = self.run_gateway(self.base_args() + ["--config", "/nonexistent.toml"])
        self.assertEqual(code, 2, (out, err))

    def test_bad_flags(self):
        up = UPSTREAM.url
        listen = lambda: "127.0.0.1:%d" % h.free_port()  # noqa: E731
        cases = [
            (["--listen", listen(), "--upstream", up, "--bogus"], "bogus"),
            (["--listen", "nonsense", "--upstream", up], "listen"),
            (["--listen", listen(), "--upstream", "ftp://127.0.0.1:1"], "upstream"),
            (["--listen", listen(), "--upstream", up, "--threads", "abc"], "threads"),
            (["--listen", listen(), "--upstream", up, "--store", "foo:bar"], "store"),
            (["--listen", listen(), "--upstream", up, "--log-level", "loud"], "log-level"),
            (["--listen", listen(), "--upstream", up, "--admin", "nowhere"], "admin"),
            (["--listen", listen()], "upstream"),
            (["--listen", listen(), "--upstream", "http://[]"], "upstream"),
            (["--listen", "[]:%d" % h.free_port(), "--upstream", up], "listen"),
        ]
        port = h.free_port()
        admin = h.free_port()
        # An upstream that is the gateway itself: every request would come back in as a new one.
        for own, upstream in [("127.0.0.1:%d" % port, "http://127.0.0.1:%d" % port),
                              ("0.0.0.0:%d" % port, "http://localhost:%d" % port),
                              ("127.0.0.1:%d" % port, "http://127.0.0.1:%d" % admin)]:
            cases.append((["--listen", own, "--admin", "127.0.0.1:%d" % admin,
                           "--upstream", upstream], "upstream"))
        for args, name in cases:
            with self.subTest(args=args):
                self.assertRejected(*self.run_gateway(args), name)


# =======================================================================================
# Bad input and failures: a clear answer or a clean close, others unaffected, nothing
# left in flight.


class BadInputTest(GatewayCase):
    def assertAnsweredOrClosed(self, data, closed, statuses=(400,)):
        self.assertTrue(closed, "the connection is closed, not left hanging")
        if data:
            r = h.parse_raw_response(data)
            self.assertIsNotNone(r, "a clear HTTP answer or nothing: %r" % data[:200])
            self.assertIn(r.status, statuses, r)

    def assertHealthy(self):
        p = path()
        start = time.monotonic()
        r = self.post(p)
        self.assertOriginal(r, 200)
        self.assertLess(time.monotonic() - start, 2.0, "other connections are unaffected")

    def assertNotInFlight(self, k, p, expect_executions, body=None, headers=()):
        """No record is left in flight: the admin API shows none, a retry (same request,
        without the X-Test-* trouble) is not 409."""
        r = self.gw.get_key(k)
        self.assertTrue(r.status == 404 or b"in_flight" not in r.body, r)
        retry = self.post(p, body, headers, key=k)
        self.assertNotEqual(retry.status, 409, retry)
        self.assertEqual(self.count(key=k), expect_executions)
        return retry

    def exchange(self, data, timeout=6.0):
        s = h.raw_connect(self.gw.port, timeout=timeout)
        try:
            s.sendall(data)
            return h.read_until_close(s)
        finally:
            s.close()

    def test_malformed_request_line(self):
        for garbage in (b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n",
                        b"POST /x HTTP/9.9\r\nHost: x\r\n\r\n"):
            with self.subTest(garbage=garbage):
                self.assertAnsweredOrClosed(*self.exchange(garbage), statuses=(400, 505))
        self.assertHealthy()

    def test_malformed_headers(self):
        p = path()
        for head in (b"Bad Header Line\r\n", b"Content-Length: abc\r\n",
                     b"Content-Length: 5\r\nContent-Length: 6\r\n",
                     b"Transfer-Encoding: gzip\r\n"):
            with self.subTest(head=head):
                req = b"POST " + p.encode() + b" HTTP/1.1\r\nHost: x\r\n" + head + b"\r\nhello"
                self.assertAnsweredOrClosed(*self.exchange(req), statuses=(400, 501))
        self.assertEqual(self.count(path=p), 0)
        self.assertHealthy()

    def test_oversized_headers(self):
        p = path()
        big = b"X-Big: " + b"a" * (256 * 1024) + b"\r\n"
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
        for head in (big, many):
            req = b"POST " + p.encode() + b" HTTP/1.1\r\nHost: x\r\n" + head + \
                b"Content-Length: 2\r\n\r\n{}"
            s = h.raw_connect(self.gw.port, timeout=6)
            try:
                try:
                    s.sendall(req)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                data, closed = h.read_until_close(s)
            finally:
                s.close()
            self.assertAnsweredOrClosed(data, closed, statuses=(400, 413, 431))
        self.assertEqual(self.count(path=p), 0)
        self.assertHealthy()

    def test_slow_headers_are_cut_off(self):
        """One byte a second: closed after header_timeout (2 s here), others unaffected."""
        s = h.raw_connect(self.gw.port, timeout=1)
        start = time.monotonic()
        closed = False
        data = b""
        try:
            for byte in b"POST /slow HTTP/1.1\r\nHost: x\r\n":
                try:
                    s.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                self.assertHealthy()
                data, closed = h.read_until_close(s)
                if closed:
                    break
                if time.monotonic() - start > 6:
                    break
        finally:
            s.close()
        self.assertTrue(closed, "a client that sends one byte a second is cut off")
        self.assertLess(time.monotonic() - start, 5.0)
        if data:
            self.assertAnsweredOrClosed(data, True, statuses=(408,))

    def test_slow_body_with_key_leaves_nothing_in_flight(self):
        k, p = key(), path()
        s = h.raw_connect(self.gw.port, timeout=1)
        start = time.monotonic()
        closed = False
        data = b""
        try:
            s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\n"
                       "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                       % (p, k)).encode())
            while time.monotonic() - start < 6:
                try:
                    s.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                data, closed = h.read_until_close(s)
                if closed:
                    break
        finally:
            s.close()
        self.assertTrue(closed, "a body sent one byte a second is cut off")
        if data:
            self.assertAnsweredOrClosed(data, True, statuses=(408,))
        self.assertEqual(self.count(path=p), 0, "nothing was forwarded")
        retry = self.assertNotInFlight(k, p, 1)
        self.assertOriginal(retry, 200)

    def test_client_hangs_up_mid_body(self):
        k, p = key(), path()
        s = h.raw_connect(self.gw.port)
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\n"
                   "Content-Length: 1000\r\n\r\n" % (p, k)).encode() + b"x" * 100)
        time.sleep(0.2)
        s.close()
        time.sleep(0.5)
        self.assertEqual(self.count(path=p), 0, "a partial body is never forwarded")
        self.assertEqual(self.gw.get_key(k).status, 404, "nothing stored")
        retry = self.assertNotInFlight(k, p, 1)
        self.assertOriginal(retry, 200)
        self.assertHealthy()

    def test_client_hangs_up_while_upstream_works(self):
        k, p = key(), path()
        s = h.raw_connect(self.gw.port)
        body = b'{"amount": 1}'
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\n"
                   "X-Test-Delay-Ms: 700\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n" % (p, k, len(body))).encode() + body)
        self.wait_executed(key=k)
        s.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = self.gw.get_key(k)
            if r.status == 200 and b"completed" in r.body:
                break
            time.sleep(0.05)
        retry = self.post(p, body, [("Content-Type", "application/json")], key=k)
        self.assertEqual(retry.status, 200, retry)
        self.assertEqual(retry.header("Idempotent-Replayed"), "true", "the retry is replayed")
        self.assertEqual(self.count(key=k), 1)

    def test_client_hangs_up_mid_response(self):
        k, p = key(), path()
        size = 1000000
        s = h.raw_connect(self.gw.port)
        s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\n"
                   "X-Test-Body-Bytes: %d\r\nContent-Length: 2\r\n\r\n{}" % (p, k, size)).encode())
        s.recv(1000)
        s.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = self.gw.get_key(k)
            if r.status == 200 and b"completed" in r.body:
                break
            time.sleep(0.05)
        retry = self.post(p, b"{}", key=k)
        self.assertEqual(retry.status, 200, retry)
        self.assertEqual(retry.header("Idempotent-Replayed"), "true")
        self.assertEqual(len(retry.body), size)
        self.assertEqual(self.count(key=k), 1)
        self.assertHealthy()

    def test_upstream_closes_early(self):
        k, p = key(), path()
        data, closed = self.exchange(
            ("POST %s HTTP/1.1\r\nHost: x\r\nIdempotency-Key: %s\r\nX-Test-Close-Early: 1\r\n"
             "Content-Length: 2\r\n\r\n{}" % (p, k)).encode())
        r = h.parse_raw_response(data)
        if r is not None and r.status == 200:
            # headers were already on their way: the body must then be cut short
            self.assertTrue(closed)
            self.assertLess(len(r.body), int(r.header("Content-Length")))
        else:
            self.assertIsNotNone(r, "a clear answer: %r" % data[:200])
            self.assertEqual(r.status, 502, r)
        retry = self.assertNotInFlight(k, p, 2, b"{}")
        self.assertOriginal(retry, 200)
        self.assertHealthy()

    def test_upstream_sends_garbage(self):
        k, p = key(), path()
        r = self.post(p, key=k, headers=[("X-Test-Garbage", "1")])
        self.assertEqual(r.status, 502, r)
        self.assertIsNone(r.header("Idempotent-Replayed"))
        retry = self.assertNotInFlight(k, p, 2)
        self.assertOriginal(retry, 200)
        self.assertHealthy()


class UpstreamFailureTest(unittest.TestCase):
    def test_upstream_timeout(self):
        gw = h.Gateway(UPSTREAM.url, {"upstream_timeout": "1s"})
        try:
            k, p = key(), path()
            start = time.monotonic()
            r = gw.post(p, {"a": 1}, [("X-Test-Delay-Ms", "2500")], k)
            self.assertIn(r.status, (502, 504), r)
            self.assertLess(time.monotonic() - start, 2.4, "answered at upstream_timeout")
            self.assertNotEqual(gw.get_key(k).status, 200, "no record left")
            retry = gw.post(p, {"a": 1}, key=k)
            self.assertEqual(retry.status, 200, retry)
            self.assertIsNone(retry.header("Idempotent-Replayed"))
            self.assertEqual(UPSTREAM.count(key=k), 2)
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_upstream_unreachable(self):
        dead = "http://127.0.0.1:%d" % h.free_port()
        gw = h.Gateway(dead)
        try:
            k = key()
            for _ in range(2):
                r = gw.post(path(), {"a": 1}, key=k)
                self.assertEqual(r.status, 502, r)
                self.assertIsNone(r.header("Idempotent-Replayed"))
            self.assertEqual(gw.get_key(k).status, 404)
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_ports_handed_out_stay_reserved(self):
        # An unreachable upstream's port handed out again, to this gateway's own listener,
        # made it proxy to itself: 409 from the inner request instead of 502.
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
        ports = [h.free_port() for _ in range(100)]
        self.assertEqual(len(set(ports)), len(ports), "a port handed out twice")
        self.assertTrue(all(p < ephemeral_low for p in ports),
                        "the kernel may assign ports at or above %d" % ephemeral_low)


class StoreFailureTest(unittest.TestCase):
    """A Redis store that goes away: 503 store-unavailable, or pass through with
    fail_open = true. Runs with its own redis-server whatever the suite's store."""

    def test_store_unavailable(self):
        redis = h.Redis()
        try:
            closed = h.Gateway(UPSTREAM.url, store=redis.url)
        except RuntimeError as e:
            redis.stop()
            if "not available in this build" in str(e):
                self.skipTest("this idem-gateway has no redis store: %s" % str(e).strip())
            raise
        open_ = h.Gateway(UPSTREAM.url, {"fail_open": True}, store=redis.url)
        try:
            k = key()
            self.assertEqual(closed.post(path(), {"a": 1}, key=k).status, 200)
            redis.stop()
            before = closed.requests_total("store_error")
            p = path()
            r = closed.post(p, {"a": 1}, key=key())
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json().get("type"), PROBLEM_BASE + "store-unavailable")
            self.assertEqual(UPSTREAM.count(path=p), 0)
            self.assertGreaterEqual(closed.requests_total("store_error") - before, 1)

            k, p = key(), path()
            for _ in range(2):
                r = open_.post(p, {"a": 1}, key=k)
                self.assertEqual(r.status, 200, r)
                self.assertIsNone(r.header("Idempotent-Replayed"))
            self.assertEqual(UPSTREAM.count(key=k), 2)

            # requests without a key never needed the store
            self.assertEqual(closed.post(path(), {"a": 1}).status, 200)
        finally:
            codes = (closed.stop(), open_.stop())
            redis.stop()
        self.assertEqual(codes, (0, 0))


class LeaseTest(GatewayCase):
    settings = {"lease": "1s"}

    def test_lease_is_renewed_while_the_upstream_works(self):
        """A request slower than its lease keeps it: duplicates are still 409."""
        k, p = key(), path()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(self.post, p, None, [("X-Test-Delay-Ms", "2800")], k)
            self.wait_executed(key=k)
            for _ in range(2):
                time.sleep(1.0)
                self.assertProblem(self.post(p, key=k), 409, "request-in-flight")
            original = slow.result(10)
        self.assertOriginal(original, 200)
        self.assertReplayOf(self.post(p, key=k), original)
        self.assertEqual(self.count(key=k), 1)


class TrustedProxiesTest(GatewayCase):
    settings = {"trusted_proxies": ["127.0.0.1", "10.1.0.0/16"]}
    routes = [{"path": "/ip/**", "scope": "ip"}]

    def test_x_forwarded_for_believed_only_from_trusted_proxies(self):
        k, p = key(), path("/ip")
        self.assertOriginal(self.post(p, headers=[("X-Forwarded-For", "10.0.0.1")], key=k,
                                      source="127.0.0.1"), 200)
        self.assertOriginal(self.post(p, headers=[("X-Forwarded-For", "10.0.0.2")], key=k,
                                      source="127.0.0.1"), 200)
        self.assertEqual(self.count(key=k), 2, "two clients behind the trusted proxy")
        k, p = key(), path("/ip")
        first = self.post(p, headers=[("X-Forwarded-For", "10.0.0.1")], key=k,
                          source="127.0.0.2")
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, headers=[("X-Forwarded-For", "10.0.0.2")], key=k,
                                      source="127.0.0.2"), first)
        self.assertEqual(self.count(key=k), 1, "an untrusted peer's X-Forwarded-For is ignored")

    def test_right_most_untrusted_address_is_the_client(self):
        k, p = key(), path("/ip")
        first = self.post(p, headers=[("X-Forwarded-For", "10.0.0.7, 10.0.0.9, 10.1.2.3")],
                          key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, headers=[("X-Forwarded-For", "10.0.0.9")], key=k),
                            first)
        self.assertOriginal(self.post(p, headers=[("X-Forwarded-For", "10.0.0.7")], key=k),
                            200)
        self.assertEqual(self.count(key=k), 2)


class LoggingTest(GatewayCase):
    def test_events_logged_without_keys_identities_or_bodies(self):
        k = "secret-key-" + uuid.uuid4().hex
        token = "Bearer tok_secret_" + uuid.uuid4().hex
        marker = "BODY_MARKER_" + uuid.uuid4().hex
        auth = [("Authorization", token)]
        p = path()
        self.assertOriginal(self.post(p, {"note": marker}, auth, key=k), 200)
        self.assertProblem(self.post(p, {"note": marker + "x"}, auth, key=k), 422, "key-reused")
        k2 = "secret-key-" + uuid.uuid4().hex
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(self.post, p, {"note": marker},
                               auth + [("X-Test-Delay-Ms", "600")], k2)
            self.wait_executed(key=k2)
            self.assertProblem(self.post(p, {"note": marker}, auth, key=k2), 409,
                               "request-in-flight")
            slow.result(10)
        time.sleep(0.3)
        log = self.gw.output()
        for secret in (k, k2, token, token.split()[1], marker):
            self.assertNotIn(secret, log, "the log never holds a key, identity or body")
        events = []
        for line in log.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                events.append(line)
        self.assertTrue(any("mismatch" in e for e in events),
                        "a JSON log line for the mismatch: %r" % log[-2000:])
        self.assertTrue(any("conflict" in e for e in events),
                        "a JSON log line for the conflict: %r" % log[-2000:])


class FlagsOverrideConfigTest(GatewayCase):
    settings = {"upstream": "http://127.0.0.1:1", "listen": "127.0.0.1:1",
                "admin": "127.0.0.1:1", "store": "not-a-store"}

    def test_flags_override_settings(self):
        k, p = key(), path()
        first = self.post(p, key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, key=k), first)


def durable_store():
    kind = h.STORE
    return kind not in ("memory",) and not kind.startswith("memory")


class StoreFullTest(GatewayCase):
    """A full store (a small LMDB map, a small memory store): new keys get 503
    store-unavailable, replays keep working, and a metric and a log line say why."""

    settings = {"lmdb_map_size": "1MiB", "memory_max_records": 40}

    @classmethod
    def setUpClass(cls):
        if h.STORE not in ("memory", "lmdb"):
            raise unittest.SkipTest("the memory and lmdb suites: Redis has no limit of ours")
        super().setUpClass()

    def test_new_keys_are_refused_and_replays_go_on(self):
        p = path("/full")
        body = [("X-Test-Body-Bytes", "2000")]
        first_key = key()
        first = self.post(p, b"", body, key=first_key)
        self.assertOriginal(first, 200)
        refused = None
        for _ in range(2000):
            r = self.post(p, b"", body, key=key())
            if r.status != 200:
                refused = r
                break
        self.assertIsNotNone(refused, "the store never filled up")
        doc = self.assertProblem(refused, 503, "store-unavailable")
        self.assertNotIn("2000", doc["detail"])
        self.assertReplayOf(self.post(p, b"", body, key=first_key), first)

        metrics = self.gw.metrics()
        self.assertGreaterEqual(
            metrics.get(("idem_store_errors_total", (("reason", "full"),)), 0.0), 1.0, metrics)
        self.assertEqual(
            metrics.get(("idem_store_errors_total", (("reason", "unavailable"),)), 0.0), 0.0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "full" not in self.gw.output():
            time.sleep(0.05)
        lines = [line for line in self.gw.output().splitlines() if '"store_error"' in line]
        self.assertTrue(any("full" in line for line in lines), lines[-3:])


class RedisSettingsTest(GatewayCase):
    """redis_key_prefix, redis_username and redis_password, on a Redis of the test's own."""

    @classmethod
    def setUpClass(cls):
        if h.STORE != "redis":
            raise unittest.SkipTest("runs in the redis suite")
        cls.redis = h.Redis()
        # An ACL user for the gateway; the default user stays open for the test's checks.
        assert cls.redis.command("ACL", "SETUSER", "idem", "on", ">pw-1", "~*", "&*",
                                 "+@all") == b"+OK"
        cls.gw = h.Gateway(UPSTREAM.url, {"redis_key_prefix": "tenant-a:",
                                          "redis_username": "idem",
                                          "redis_password": "pw-1"}, store=cls.redis.url)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.redis.stop()

    def test_keys_carry_the_prefix_and_the_user_authenticates(self):
        k, p = key(), path()
        first = self.post(p, key=k)
        self.assertOriginal(first, 200)
        self.assertReplayOf(self.post(p, key=k), first)
        record = self.gw.get_key(k).json()["record"]
        self.assertEqual(self.redis.command("EXISTS", "tenant-a:{%s}" % record), b":1")
        self.assertEqual(self.redis.command("EXISTS", "tenant-a:token"), b":1")
        self.assertEqual(self.redis.command("EXISTS", "tenant-a:secret"), b":1")
        self.assertEqual(self.redis.command("EXISTS", "idem:token", "idem:secret"), b":0")

    def test_a_wrong_password_is_refused_at_start(self):
        code, _, err = CommandLineTest.run_gateway(
            self, ["--listen", "127.0.0.1:%d" % h.free_port(), "--upstream", UPSTREAM.url,
                   "--admin", "127.0.0.1:%d" % h.free_port(), "--store", self.redis.url],
            'redis_username = "idem"\nredis_password = "wrong"\n')
        self.assertEqual(code, 1, err)
        lines = [line for line in err.splitlines() if line.strip()]
        self.assertTrue(any("secret" in line for line in lines), err)
        self.assertNotIn("wrong", err, "the password is never printed")


class CrashTest(unittest.TestCase):
    """kill -9 of the gateway at random moments under load of fresh keys, 20 times on one
    data directory (lmdb suite; durability alternates between process and power)."""

    KILLS = 20
    LEASE = 1.0  # seconds: a cut-short key's retry takes over after this

    def test_kill_9_under_load(self):
        if h.STORE != "lmdb":
            self.skipTest("runs in the lmdb suite")
        store = h.store_spec()
        rng = random.Random(os.getpid())
        lock = threading.Lock()
        answered = {}  # key -> (path, response): the answer reached the client
        cut = {}  # key -> path: sent, no answer before the kill
        for round_ in range(self.KILLS):
            durability = "power" if round_ % 2 else "process"
            gw = h.Gateway(UPSTREAM.url, {"durability": durability, "lease": "1s"}, store=store)
            stop = threading.Event()

            def load():
                while not stop.is_set():
                    k, p = key(), path("/crash")
                    try:
                        r = gw.post(p, {"amount": 1}, key=k, timeout=5)
                    except OSError:
                        with lock:
                            cut[k] = p
                        continue
                    with lock:
                        if r.status == 200:
                            answered[k] = (p, r)
                        else:
                            cut[k] = p

            threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.05, 0.4))
            stop.set()  # no new requests: the ones under way now are cut by the kill
            gw.proc.kill()
            gw.proc.wait(10)
            for t in threads:
                t.join(10)

        self.assertGreater(len(answered), 100, "the load ran")
        time.sleep(self.LEASE + 0.2)  # leases of cut-short requests have ended
        gw = h.Gateway(UPSTREAM.url, {"lease": "1s"}, store=store)
        try:
            for k, (p, first) in answered.items():
                replay = gw.post(p, {"amount": 1}, key=k)
                self.assertEqual(replay.status, 200, (k, replay))
                self.assertEqual(replay.header("Idempotent-Replayed"), "true", k)
                self.assertEqual(replay.body, first.body, "the same body after a kill -9")
                self.assertEqual(UPSTREAM.count(key=k), 1, "answered, so executed once")
            # Cut short: the upstream may have run it before the kill. Its retry follows
            # on_expired_lease = "retry" and runs it (again); counted, not failed.
            again = 0
            for k, p in cut.items():
                before = UPSTREAM.count(key=k)
                r = gw.post(p, {"amount": 1}, key=k)
                self.assertEqual(r.status, 200, (k, r))
                after = UPSTREAM.count(key=k)
                self.assertLessEqual(after, before + 1)
                if before >= 1 and after > before:
                    again += 1
        finally:
            gw.stop()
        sys.stderr.write("\n%d kills: %d answered keys replayed with the same body; %d cut "
                         "short, %d of them executed again on retry\n" %
                         (self.KILLS, len(answered), len(cut), again))


class SharedRedisTest(unittest.TestCase):
    """Several gateway processes on one Redis, a Redis that dies under load, and the round
    trips a request costs. Runs in the redis suite, each test with a redis-server of its own
    (the gateways run two event loops each, so each has several Redis clients)."""

    def setUp(self):
        if h.STORE != "redis":
            self.skipTest("runs in the redis suite")
        self.redis = h.Redis()
        self.gateways = []

    def tearDown(self):
        for gw in self.gateways:
            gw.stop()
        self.redis.stop()

    def start(self, settings=None):
        gw = h.Gateway(UPSTREAM.url, settings, store=self.redis.url, extra_args=["--threads", "2"])
        self.gateways.append(gw)
        return gw

    def calls(self, command):
        stats = self.redis.info("commandstats").get("cmdstat_" + command, "calls=0")
        return int(stats.split(",")[0].split("=")[1])

    def evalsha_calls(self):
        return self.calls("evalsha")

    def assert_every_replay_reaches_redis(self, gw, replays):
        p, k = path(), key()
        self.assertEqual(gw.post(p, {"amount": 3}, key=k).status, 200)
        before = self.evalsha_calls()
        for _ in range(replays):
            self.assertEqual(gw.post(p, {"amount": 3}, key=k).header("Idempotent-Replayed"),
                             "true")
        self.assertEqual(self.evalsha_calls() - before, replays, "every replay is a round trip")

    def test_duplicates_spread_over_three_gateways_execute_once(self):
        gateways = [self.start({"concurrency": "wait", "wait_timeout": "10s"}) for _ in range(3)]
        k, p = key(), path()
        results = h.run_parallel(
            lambda gw: gw.post(p, {"amount": 7}, [("X-Test-Delay-Ms", "300")], k, timeout=20),
            [(gateways[i % 3],) for i in range(100)])
        errors = [r for r in results if isinstance(r, Exception)]
        self.assertEqual(errors, [])
        self.assertEqual(UPSTREAM.count(key=k), 1, "one execution across three gateways")
        self.assertEqual([r.status for r in results], [200] * 100)
        originals = [i for i, r in enumerate(results) if r.header("Idempotent-Replayed") is None]
        self.assertEqual(len(originals), 1)
        first = results[originals[0]]
        # Every other one is a replay, the waiters on the two gateways that did not run it
        # (two thirds of them, woken through Redis) included.
        for i, r in enumerate(results):
            if i != originals[0]:
                self.assertEqual(r.header("Idempotent-Replayed"), "true")
                self.assertEqual(r.body, first.body)

    def test_redis_killed_and_restarted_under_load(self):
        gw = self.start()
        stop = threading.Event()
        lock = threading.Lock()
        answers = []  # (key, status, time answered)

        def load():
            while not stop.is_set():
                k = key()
                try:
                    r = gw.post(path(), {"amount": 1}, key=k, timeout=5)
                    status = r.status
                except OSError as e:
                    status = repr(e)
                with lock:
                    answers.append((k, status, time.monotonic()))
                stop.wait(0.01)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            self.redis.kill()
            killed = time.monotonic()
            time.sleep(1.0)
            ready = gw.admin("GET", "/readyz")
            self.assertEqual(ready.status, 503, "/readyz reports the store down")
            self.redis.start()
            back = time.monotonic()
            deadline = back + 5
            while time.monotonic() < deadline:
                with lock:
                    if any(status == 200 and at > back for _, status, at in answers):
                        break
                time.sleep(0.02)
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        self.assertIsNone(gw.proc.poll(), "the gateway is still running")
        statuses = {status for _, status, _ in answers}
        self.assertLessEqual(statuses, {200, 503}, "only successes and 503s, no resets")
        self.assertTrue(any(status == 503 for _, status, at in answers if killed < at < back),
                        "503 while Redis is down")
        recovered = [at for _, status, at in answers if status == 200 and at > back]
        self.assertTrue(recovered, "served again after Redis came back")
        self.assertLess(recovered[0] - back, 2.0, "recovered within 2 s")
        # Readiness asks the admin API's own Redis client, whose reconnection backs off on
        # its own schedule (at most reconnect_max, 1 s, between tries): ready within 2 s too.
        deadline = time.monotonic() + 2.0
        while gw.admin("GET", "/readyz").status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(gw.admin("GET", "/readyz").status, 200)
        for k, status, _ in answers:
            # Each key was sent once: executed once when answered 200, never when 503.
            self.assertEqual(UPSTREAM.count(key=k), 1 if status == 200 else 0, (k, status))

    def test_a_completion_redis_did_not_take_is_written_once_it_answers(self):
        # Redis pauses its clients while the upstream works, so the completion times out
        # (and, its connection closed, is never carried out). The client still gets its
        # answer; the gateway writes the record again once Redis answers, and a retry after
        # the lease has run out is replayed, not executed a second time.
        gw = self.start({"lease": 5})
        k, p = key(), path()
        answered = {}

        def first():
            answered["r"] = gw.post(p, {"amount": 5}, [("X-Test-Delay-Ms", "400")], k,
                                    timeout=15)

        started = time.monotonic()
        t = threading.Thread(target=first, daemon=True)
        t.start()
        time.sleep(0.2)  # claimed; the upstream works
        self.assertEqual(self.redis.command("CLIENT", "PAUSE", "2500"), b"+OK")
        t.join(10)
        self.assertIn("r", answered, "the client is answered while Redis is paused")
        self.assertEqual(answered["r"].status, 200)
        self.assertIn('"event":"store_error"', gw.output())
        self.assertEqual(UPSTREAM.count(key=k), 1)
        deadline = time.monotonic() + 5
        while "store_recovered" not in gw.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(max(0.0, started + 5.5 - time.monotonic()))  # the lease has run out
        retry = gw.post(p, {"amount": 5}, key=k)
        self.assertEqual(UPSTREAM.count(key=k), 1, "executed once")
        self.assertEqual(retry.status, 200)
        self.assertEqual(retry.header("Idempotent-Replayed"), "true")
        self.assertEqual(retry.body, answered["r"].body)
        self.assertIn('"detail":"completion written on attempt', gw.output())

    def test_redis_paused_under_load_executes_each_key_once(self):
        # Fresh keys from four clients while Redis pauses twice for longer than a command
        # may take: claims and completions time out. Afterwards every key is sent again,
        # once its lease (3 s) has run out. A key answered 200 is replayed; one answered
        # 503 executes now. None executes twice.
        gw = self.start({"lease": 3})
        stop = threading.Event()
        lock = threading.Lock()
        answers = {}  # key -> (status, body)
        p = path()

        def load():
            while not stop.is_set():
                k = key()
                try:
                    r = gw.post(p, {"amount": 2}, [("X-Test-Delay-Ms", "300")], k, timeout=10)
                    with lock:
                        answers[k] = (r.status, r.body)
                except OSError as e:
                    with lock:
                        answers[k] = (repr(e), None)
                stop.wait(0.05)  # a 503 comes at once while Redis is away: bounds the keys

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for _ in range(2):
                time.sleep(0.6)
                self.assertEqual(self.redis.command("CLIENT", "PAUSE", "1500"), b"+OK")
                time.sleep(1.6)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(15)
        statuses = {status for status, _ in answers.values()}
        self.assertLessEqual(statuses, {200, 503}, "only successes and 503s")
        self.assertIn(503, statuses, "the pauses were felt")
        time.sleep(3.5)  # every lease taken before the end has run out
        for k, (status, body) in answers.items():
            again = gw.post(p, {"amount": 2}, key=k)
            self.assertEqual(again.status, 200, k)
            if status == 200:
                self.assertEqual(again.header("Idempotent-Replayed"), "true", k)
                self.assertEqual(again.body, body, k)
            self.assertEqual(UPSTREAM.count(key=k), 1, (k, status))
        self.assertTrue('"event":"store_recovered"' in gw.output(), "completions were retried")

    def test_a_claim_redis_ran_after_it_timed_out_is_released(self):
        # Redis stops (as under a slow command) with a claim on its way: the client gets
        # 503 once the claim times out, and Redis runs it when it goes on. The gateway then
        # releases that record, so the client's retry executes rather than meeting 409
        # request-in-flight until the lease (30 s) runs out.
        gw = self.start()
        k, p = key(), path()
        self.redis.proc.send_signal(signal.SIGSTOP)
        try:
            self.assertEqual(gw.post(p, {"amount": 8}, key=k, timeout=10).status, 503)
        finally:
            self.redis.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 5
        while "claim that timed out" not in gw.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        retry = gw.post(p, {"amount": 8}, key=k)
        self.assertEqual(retry.status, 200)
        self.assertIsNone(retry.header("Idempotent-Replayed"))
        self.assertEqual(UPSTREAM.count(key=k), 1)
        self.assertTrue('"detail":"release of a claim that timed out written on attempt'
                        in gw.output(), "the claim was carried out, and released")

    def test_sigterm_ends_the_retries_of_a_completion_with_the_drain(self):
        gw = self.start()
        k = key()
        answered = {}

        def first():
            answered["r"] = gw.post(path(), {"amount": 6}, [("X-Test-Delay-Ms", "400")], k,
                                    timeout=15)

        t = threading.Thread(target=first, daemon=True)
        t.start()
        time.sleep(0.2)
        self.assertEqual(self.redis.command("CLIENT", "PAUSE", "6000"), b"+OK")
        t.join(10)
        self.assertEqual(answered["r"].status, 200)
        began = time.monotonic()
        self.assertEqual(gw.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - began, 2.0,
                        "the drain does not wait for the lease of a retried completion")
        self.assertIn('"completions_unsettled":1', gw.output())
        self.redis.command("CLIENT", "UNPAUSE")

    def test_round_trips_per_request(self):
        gw = self.start()
        p = path()
        gw.post(p, {"warm": 1}, key=key())  # connections and scripts are up
        before = self.evalsha_calls()
        fresh = 40
        for _ in range(fresh):
            self.assertEqual(gw.post(p, {"amount": 1}, key=key()).status, 200)
        per_fresh = (self.evalsha_calls() - before) / fresh
        self.assertLessEqual(per_fresh, 2.0)
        self.assertGreaterEqual(per_fresh, 2.0, "claim and complete each reach Redis")
        self.assertEqual(self.calls("client|caching"), 0, "fresh keys are not read for the cache")
        k = key()
        self.assertEqual(gw.post(p, {"amount": 2}, key=k).status, 200)
        before = self.evalsha_calls()
        replays = 40
        for _ in range(replays):
            self.assertEqual(gw.post(p, {"amount": 2}, key=k).header("Idempotent-Replayed"),
                             "true")
        scripts = self.evalsha_calls() - before
        # Each worker's first replay runs the claim script and then reads the record into
        # its replay cache (CLIENT CACHING and GET, pipelined: one round trip); the others
        # are answered from the cache, unless one comes before that read is back.
        cache_reads = self.calls("client|caching")
        self.assertLessEqual((scripts + cache_reads) / replays, 1.0)
        self.assertGreaterEqual(scripts, 1, "the first replay reaches Redis")
        self.assertIn(cache_reads, (1, 2), "one read per worker that saw a replay")
        self.assertLessEqual(scripts, 8, "later replays are answered from the cache")

    def test_without_a_replay_cache_every_replay_reaches_redis(self):
        gw = self.start({"redis_replay_cache": 0})
        self.assert_every_replay_reaches_redis(gw, 10)
        self.assertEqual(self.calls("client|caching"), 0)

    def test_a_flush_through_the_admin_api_reaches_every_worker(self):
        gw = self.start()
        p, k = path(), key()
        self.assertEqual(gw.post(p, {"amount": 4}, key=k).status, 200)
        for _ in range(20):  # both workers see replays and keep the record
            self.assertEqual(gw.post(p, {"amount": 4}, key=k).header("Idempotent-Replayed"),
                             "true")
        self.assertIn(gw.delete_key(k).status, (200, 204))
        r = gw.post(p, {"amount": 4}, key=k)
        self.assertIsNone(r.header("Idempotent-Replayed"), "executed again after the flush")
        self.assertEqual(UPSTREAM.count(key=k), 2)

    def replay_caches_active(self, gw, want, timeout=3.0):
        """idem_redis_replay_cache_active once it is `want`, or as it is after `timeout`."""
        deadline = time.time() + timeout
        while True:
            value = gw.metrics().get(("idem_redis_replay_cache_active", ()))
            if value == want or time.time() > deadline:
                return value
            time.sleep(0.05)

    def test_the_metrics_say_how_many_replay_caches_answer(self):
        gw = self.start()
        self.assertEqual(self.replay_caches_active(gw, 2), 2, "both workers' caches answer")
        self.assertIn('"msg":"redis replay cache on"', gw.output())
        off = self.start({"redis_replay_cache": 0})
        self.assertNotIn(("idem_redis_replay_cache_active", ()), off.metrics())

    def test_a_user_who_may_not_track_is_told_why_and_still_replayed(self):
        self.assertEqual(self.redis.command("ACL", "SETUSER", "notrack", "on", ">pw", "~*", "&*",
                                            "+@all", "-client|tracking"), b"+OK")
        gw = self.start({"redis_username": "notrack", "redis_password": "pw"})
        def off_lines():
            return [json.loads(line) for line in gw.output().splitlines()
                    if "redis replay cache off" in line]

        deadline = time.time() + 5
        while len(off_lines()) < 2 and time.time() < deadline:  # each worker says it
            time.sleep(0.05)
        lines = off_lines()
        self.assertEqual(len(lines), 2, "one line per worker:\n" + gw.output())
        for line in lines:
            self.assertEqual(line["level"], "warning")
            self.assertIn("CLIENT TRACKING", line["reason"])
            self.assertIn("NOPERM", line["reason"])
        self.assertEqual(self.replay_caches_active(gw, 0, timeout=0), 0)
        self.assert_every_replay_reaches_redis(gw, 5)


class DurabilityTest(unittest.TestCase):
    """Section 7 with a durable store (lmdb or redis): records outlive the process."""

    def setUp(self):
        if not durable_store():
            self.skipTest("the %s store is not durable" % h.STORE)
        self.gateways = []

    def tearDown(self):
        for gw in self.gateways:
            gw.stop()

    def start(self, store, settings=None, routes=()):
        gw = h.Gateway(UPSTREAM.url, settings, routes, store=store)
        self.gateways.append(gw)
        return gw

    def crash(self, gw):
        gw.proc.kill()
        gw.proc.wait(10)

    def test_completed_record_replayed_after_kill_9(self):
        store = h.store_spec()
        gw = self.start(store)
        k, p = key(), path()
        first = gw.post(p, {"a": 1}, [("X-Test-Status", "201")], k)
        self.assertEqual(first.status, 201, first)
        self.crash(gw)
        gw = self.start(store)
        replay = gw.post(p, {"a": 1}, key=k)
        self.assertEqual(replay.status, 201, replay)
        self.assertEqual(replay.header("Idempotent-Replayed"), "true")
        self.assertEqual(replay.body, first.body)
        self.assertEqual(UPSTREAM.count(key=k), 1)

    def test_power_durability_replayed_after_kill_9(self):
        store = h.store_spec()
        gw = self.start(store, {"durability": "power"})
        k, p = key(), path()
        first = gw.post(p, {"a": 2}, [("X-Test-Status", "201")], k)
        self.assertEqual(first.status, 201, first)
        self.crash(gw)
        gw = self.start(store, {"durability": "power"})
        replay = gw.post(p, {"a": 2}, key=k)
        self.assertEqual(replay.header("Idempotent-Replayed"), "true")
        self.assertEqual(replay.body, first.body)
        self.assertEqual(UPSTREAM.count(key=k), 1)

    def test_in_flight_at_crash(self):
        """on_expired_lease = retry (default): once the dead gateway's lease runs out, the
        retry executes afresh; = fail: 409 outcome-unknown until an operator flushes."""
        store = h.store_spec()
        settings = {"lease": "1s"}
        routes = [{"path": "/fail/**", "on_expired_lease": "fail"}]
        gw = self.start(store, settings, routes)
        k_retry, p_retry = key(), path()
        k_fail, p_fail = key(), path("/fail")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for k, p in ((k_retry, p_retry), (k_fail, p_fail)):
                pool.submit(gw.post, p, {"a": 1}, [("X-Test-Delay-Ms", "3000")], k, timeout=10)
            deadline = time.monotonic() + 5
            while (UPSTREAM.count(key=k_retry) < 1 or UPSTREAM.count(key=k_fail) < 1) and \
                    time.monotonic() < deadline:
                time.sleep(0.02)
            self.crash(gw)
        gw = self.start(store, settings, routes)

        def poll(p, k, done):
            deadline = time.monotonic() + 6
            while True:
                r = gw.post(p, {"a": 1}, key=k)
                if done(r) or time.monotonic() > deadline:
                    return r
                self.assertEqual(r.status, 409, r)
                self.assertEqual(r.json().get("type"), PROBLEM_BASE + "request-in-flight")
                time.sleep(0.2)

        r = poll(p_retry, k_retry, lambda r: r.status != 409)
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.header("Idempotent-Replayed"))
        self.assertEqual(UPSTREAM.count(key=k_retry), 2)

        outcome_unknown = PROBLEM_BASE + "outcome-unknown"
        r = poll(p_fail, k_fail, lambda r: r.status == 409 and
                 r.json().get("type") == outcome_unknown)
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json().get("type"), outcome_unknown)
        time.sleep(1.2)
        r = gw.post(p_fail, {"a": 1}, key=k_fail)
        self.assertEqual(r.json().get("type"), outcome_unknown, "until an operator flushes")
        self.assertIn(gw.delete_key(k_fail).status, (200, 204))
        r = gw.post(p_fail, {"a": 1}, key=k_fail)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(UPSTREAM.count(key=k_fail), 2)

    def test_gateways_sharing_a_store_agree(self):
        if not h.STORE.startswith("redis"):
            self.skipTest("only a Redis store is shared by running gateways")
        store = h.store_spec()
        a, b = self.start(store), self.start(store)
        k, p = key(), path()
        first = a.post(p, {"a": 1}, [("Authorization", "Bearer tok_1")], k)
        self.assertEqual(first.status, 200)
        replay = b.post(p, {"a": 1}, [("Authorization", "Bearer tok_1")], k)
        self.assertEqual(replay.header("Idempotent-Replayed"), "true", replay)
        self.assertEqual(replay.body, first.body)
        self.assertEqual(UPSTREAM.count(key=k), 1)


def test_classes():
    loader = unittest.TestLoader()
    module = sys.modules[__name__]
    return [name for name in dir(module)
            if isinstance(getattr(module, name), type)
            and issubclass(getattr(module, name), unittest.TestCase)
            and loader.getTestCaseNames(getattr(module, name))]


def main():
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--gateway")
    parser.add_argument("--store")
    parser.add_argument("--idemctl")
    parser.add_argument("--list-classes", action="store_true")
    args, rest = parser.parse_known_args()
    if args.list_classes:
        print(";".join(test_classes()))
        return
    h.configure(args.gateway, args.store, args.idemctl)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
