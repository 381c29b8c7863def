#!/usr/bin/env python3
"""A test upstream for idem's integration tests, driven by the request it gets.

Run: python3 upstream.py [--port 0]   (prints "listening on 127.0.0.1:<port>", flushed)

Every request other than /__* is an *execution*: it is counted, then answered as its
X-Test-* headers ask:

  X-Test-Status: 503          status of the answer (default 200)
  X-Test-Delay-Ms: 300        sleep this long (after counting) before answering
  X-Test-Body-Bytes: 5000000  body of exactly this many bytes instead of the JSON echo
  X-Test-Chunked: 1           send the body with Transfer-Encoding: chunked
  X-Test-Set-Cookie: a=b      add a Set-Cookie header
  X-Test-Header: Name: value  add a response header (may repeat)
  X-Test-Date: <http-date>    send this Date instead of the current one
  X-Test-Garbage: 1           answer bytes that are not HTTP, then close
  X-Test-Close-Early: 1       send the headers and half the body, then close
  X-Test-Tag: T               count this execution under T instead of the
                              Idempotency-Key value (for renamed key headers)

The default answer is JSON: {"id": <fresh id>, "seq": n, "method", "path", "key",
"body": <request body as text>, "headers": [[name, value], ...]}; the same id is also
in the X-Upstream-Id header. A replay of a stored answer therefore carries the id of the
execution it replays, and a second execution has a new id.

Counters (not executions):
  GET /__count?key=K    {"key": K, "count": n}   executions under that key (or tag)
  GET /__count?path=P   {"path": P, "count": n}  executions of that path (no query)
  GET /__count          {"total": n}
  GET /__requests?key=K the requests executed under K: method, path, headers, body
"""

import argparse
import itertools
import json
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.by_key = {}
        self.by_path = {}
        self.requests = {}
        self.seq = itertools.count(1)

    def record(self, key, path, request):
        with self.lock:
            self.total += 1
            if key is not None:
                self.by_key[key] = self.by_key.get(key, 0) + 1
                self.requests.setdefault(key, []).append(request)
            self.by_path[path] = self.by_path.get(path, 0) + 1
            return next(self.seq)


COUNTERS = Counters()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "idem-test-upstream"
    timeout = 60  # idle keep-alive connections end eventually

    def log_message(self, fmt, *args):  # quiet: the tests read their own output
        pass

    # Every method is handled the same way.
    def do_GET(self):
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def do_HEAD(self):
        self.handle_any(head=True)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, status, document):
        body = json.dumps(document).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_counters(self, url):
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        with COUNTERS.lock:
            if url.path == "/__count" and "key" in query:
                key = query["key"][0]
                doc = {"key": key, "count": COUNTERS.by_key.get(key, 0)}
            elif url.path == "/__count" and "path" in query:
                path = query["path"][0]
                doc = {"path": path, "count": COUNTERS.by_path.get(path, 0)}
            elif url.path == "/__count":
                doc = {"total": COUNTERS.total}
            elif url.path == "/__requests":
                doc = COUNTERS.requests.get(query.get("key", [""])[0], [])
            else:
                doc = None
        if doc is None:
            self.send_json(404, {"error": "unknown counter"})
        else:
            self.send_json(200, doc)

    def handle_any(self, head=False):
        url = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        if url.path.startswith("/__"):
            return self.handle_counters(url)

        h = self.headers
        key = h.get("X-Test-Tag") or h.get("Idempotency-Key")
        headers = [[k, v] for k, v in h.items()]
        seq = COUNTERS.record(
            key,
            url.path,
            {
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body": body.decode("latin-1"),
            },
        )
        delay = int(h.get("X-Test-Delay-Ms") or 0)
        if delay:
            time.sleep(delay / 1000.0)

        if h.get("X-Test-Garbage"):
            self.wfile.write(b"\x16\x03\x01\x00garbage, not HTTP at all\r\n\r\n\xff\xfe")
            self.wfile.flush()
            self.close_now()
            return

        status = int(h.get("X-Test-Status") or 200)
        execution_id = "ex_" + uuid.uuid4().hex
        size = h.get("X-Test-Body-Bytes")
        if size is not None:
            size = int(size)
            prefix = (execution_id + "\n").encode()
            payload = (prefix + b"x" * max(0, size - len(prefix)))[:size]
            content_type = "application/octet-stream"
        else:
            payload = json.dumps(
                {
                    "id": execution_id,
                    "seq": seq,
                    "method": self.command,
                    "path": self.path,
                    "key": h.get("Idempotency-Key"),
                    "body": body.decode("latin-1"),
                    "headers": headers,
                },
                sort_keys=True,
            ).encode()
            content_type = "application/json"
        if status in (204, 304) or 100 <= status < 200:
            payload = b""

        self.send_response_only(status)
        self.send_header("Date", h.get("X-Test-Date") or formatdate(usegmt=True))
        self.send_header("Content-Type", content_type)
        self.send_header("X-Upstream-Id", execution_id)
        self.send_header("Cache-Control", "no-store")
        for extra in h.get_all("X-Test-Header") or []:
            name, _, value = extra.partition(":")
            self.send_header(name.strip(), value.strip())
        if h.get("X-Test-Set-Cookie"):
            self.send_header("Set-Cookie", h.get("X-Test-Set-Cookie"))
        chunked = bool(h.get("X-Test-Chunked")) and status not in (204, 304)
        close_early = bool(h.get("X-Test-Close-Early"))
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif status not in (204, 304):
            extra = 10000 if close_early else 0
            self.send_header("Content-Length", str(len(payload) + extra))
        self.send_header("Connection", "keep-alive")
        self.send_header("Keep-Alive", "timeout=60")
        self.end_headers()
        if head:
            return
        if close_early:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_now()
            return
        if chunked:
            step = max(1, min(65536, len(payload) // 3 + 1))
            for i in range(0, len(payload), step):
                part = payload[i : i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(payload)

    def close_now(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Server((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("listening on %s:%d" % server.server_address[:2], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
