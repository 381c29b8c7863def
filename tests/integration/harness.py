"""Processes and clients for idem's integration tests (python3 standard library only).

Starts the test upstream (upstream.py), a store when the suite needs one (redis-server),
and idem-gateway on free ports; talks to them over HTTP or raw sockets; and always cleans
up: every process started here is ended at exit, even when a test fails.

The suite runs against one store kind, chosen once per run (`configure()`):
  memory          --store memory
  lmdb            --store lmdb:<fresh temporary directory per gateway>
  redis           one redis-server on a free port per run, flushed per gateway,
                  --store redis://127.0.0.1:<port>
  anything else   passed to --store as it is
"""

import atexit
import fcntl
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))

GATEWAY = os.environ.get("IDEM_GATEWAY", "")
IDEMCTL = os.environ.get("IDEM_IDEMCTL", "")
STORE = os.environ.get("IDEM_IT_STORE", "memory")
KEEP = bool(os.environ.get("IDEM_IT_KEEP"))  # keep logs and data, print where

# Short timeouts so that the slow-client and shutdown tests stay quick. Every gateway
# config gets these unless a test asks for a config without them.
BASE_SETTINGS = {
    "header_timeout": "2s",
    "body_timeout": "2s",
    "idle_timeout": "5s",
    "upstream_timeout": "10s",
    "drain_timeout": "5s",
}

_processes = []  # every Popen started here, ended at exit
_tempdirs = []
_workdir = None


def configure(gateway=None, store=None, idemctl=None):
    """Sets the gateway and idemctl binaries and the store kind for the whole run."""
    global GATEWAY, STORE, IDEMCTL
    if gateway:
        GATEWAY = os.path.abspath(gateway)
    if store:
        STORE = store
    if idemctl:
        IDEMCTL = os.path.abspath(idemctl)


def workdir():
    global _workdir
    if _workdir is None:
        _workdir = tempfile.mkdtemp(prefix="idem-it-")
        _tempdirs.append(_workdir)
    return _workdir


def new_tempdir(prefix):
    path = tempfile.mkdtemp(prefix=prefix, dir=workdir())
    return path


def unique(prefix="k"):
    """A fresh key or path segment: tests never share records or counters."""
    return "%s-%s" % (prefix, uuid.uuid4().hex)


# Ports are reserved, not just found free. A port found by binding to port 0 comes from the
# kernel's ephemeral range, so the moment it is closed the kernel may hand it out again: to
# another test process's bind(0), or as the source port of an outgoing connection (to the
# port itself, nothing listening: TCP connects the socket to itself). Then a gateway
# restarted on its port, or an upstream that must stay unreachable, meets a stranger. So
# ports come from just below the ephemeral range, which the kernel never assigns, and each
# is held by an flock(2) on a file shared by every test process (tests/redis does the same)
# until this process exits.
PORT_DIR = os.path.join(tempfile.gettempdir(), "idem-test-ports")
_port_locks = []
_port_choice = random.Random()  # the suite may seed the global one


def _reservable_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    low = max(1024, ephemeral_low - 12000)
    return (low, ephemeral_low - 1) if ephemeral_low - low >= 1000 else None


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port():
    """A loopback port that nothing listens on, held for this process until it exits."""
    span = _reservable_range()
    if span is not None:
        os.makedirs(PORT_DIR, exist_ok=True)
        for _ in range(200):
            port = _port_choice.randint(*span)
            fd = os.open(os.path.join(PORT_DIR, str(port)), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            if _bindable(port):
                _port_locks.append(fd)
                return port
            os.close(fd)
    # No room below the ephemeral range (an unusual kernel setting): take the kernel's pick.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cleanup():
    for proc in _processes:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
    for path in _tempdirs:
        if KEEP:
            sys.stderr.write("idem-it: logs and data kept in %s\n" % path)
        else:
            shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup)
# A SIGTERM from ctest's timeout still runs the atexit cleanup.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _die_with_parent():
    """Runs in the child before exec: on Linux, the child gets SIGKILL when the thread that
    started it dies, so a test process killed by ctest's TIMEOUT (SIGKILL, no atexit)
    leaves no gateway, upstream or redis-server behind. Spawn only from the main thread."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort off Linux
        pass


def _spawn(args, log_path, **kwargs):
    log = open(log_path, "wb")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent, **kwargs)
    log.close()
    _processes.append(proc)
    return proc


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _wait_for_line(proc, log_path, pattern, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, _read(log_path))
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError("%s did not print %r:\n%s" % (proc.args[0], pattern, _read(log_path)))


# ---------------------------------------------------------------------------------------
# HTTP clients


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), as received
        self.body = body  # bytes

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        body = self.body[:300]
        return "<Response %d %r %r>" % (self.status, self.headers, body)


def http_request(port, method, path, body=None, headers=(), timeout=10.0, source=None,
                 host="127.0.0.1"):
    """One request on a fresh connection. `headers` is a list of (name, value) pairs sent as
    given (duplicates allowed); a dict body is sent as JSON."""
    headers = list(headers)
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
    elif isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, r.getheaders(), data)
    finally:
        conn.close()


def raw_connect(port, timeout=10.0, source=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    return s


def read_until_close(sock, limit=64 << 20):
    """Reads until the peer closes (or the socket's timeout): the bytes received, and
    whether the peer closed (False on timeout)."""
    chunks = []
    total = 0
    try:
        while total < limit:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks), True
            chunks.append(data)
            total += len(data)
    except socket.timeout:
        return b"".join(chunks), False
    except ConnectionResetError:
        return b"".join(chunks), True
    return b"".join(chunks), False


def parse_raw_response(data):
    """Parses the first HTTP/1.1 response in `data` (Content-Length or close-delimited):
    a Response, or None when `data` does not start with a status line."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1."):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    r = Response(status, parts[2] if len(parts) > 2 else "", headers, rest)
    n = r.header("Content-Length")
    if n is not None:
        r.body = rest[: int(n)]
    return r


# ---------------------------------------------------------------------------------------
# Processes


class Upstream:
    """The test upstream (upstream.py) in its own process."""

    def __init__(self):
        self.log = os.path.join(workdir(), "upstream-%s.log" % uuid.uuid4().hex[:8])
        self.proc = _spawn([sys.executable, os.path.join(HERE, "upstream.py"), "--port", "0"],
                           self.log)
        m = _wait_for_line(self.proc, self.log, r"listening on 127\.0\.0\.1:(\d+)", 10)
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d" % self.port

    def count(self, key=None, path=None):
        if key is not None:
            q = "?key=" + urllib.parse.quote(key, safe="")
        elif path is not None:
            q = "?path=" + urllib.parse.quote(path, safe="")
        else:
            q = ""
        doc = http_request(self.port, "GET", "/__count" + q).json()
        return doc["total"] if key is None and path is None else doc["count"]

    def requests(self, key):
        return http_request(self.port, "GET", "/__requests?key=" +
                            urllib.parse.quote(key, safe="")).json()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Redis:
    """redis-server on a free port, nothing persisted."""

    def __init__(self):
        self.port = free_port()
        self.log = os.path.join(workdir(), "redis-%d.log" % self.port)
        self.start()
        self.url = "redis://127.0.0.1:%d" % self.port

    def start(self):
        """Starts redis-server (again, after kill(): same port, empty)."""
        self.proc = _spawn(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no"], self.log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == b"+PONG":
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start:\n" + _read(self.log))

    def kill(self):
        """SIGKILL: gone at once, mid-command."""
        self.proc.kill()
        self.proc.wait(10)

    def command(self, *args):
        """One RESP command; the first line of the answer."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(out)
            return s.recv(65536).split(b"\r\n")[0]

    def info(self, section):
        """INFO `section` as {field: value} (values as strings)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n" % (len(section), section.encode()))
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                header, _, rest = data.partition(b"\r\n")
                if header.startswith(b"$") and len(rest) >= int(header[1:]) + 2:
                    break
        fields = {}
        for line in rest.decode().splitlines():
            name, sep, value = line.partition(":")
            if sep and not name.startswith("#"):
                fields[name] = value
        return fields

    def flush(self):
        self.command("FLUSHALL")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


_redis = None


def store_spec(kind=None):
    """The --store value for a new gateway under the run's store kind."""
    global _redis
    kind = kind or STORE
    if kind == "memory":
        return "memory"
    if kind == "lmdb":
        return "lmdb:" + new_tempdir("lmdb-")
    if kind == "redis":
        if _redis is None or _redis.proc.poll() is not None:
            _redis = Redis()
        _redis.flush()
        return _redis.url
    return kind


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError("no TOML form for %r" % (value,))


def render_config(settings=None, routes=(), base=True):
    """A gateway config file: top-level settings, then one [[route]] table per route
    (a dict with `path` and the settings it overrides)."""
    merged = dict(BASE_SETTINGS) if base else {}
    merged.update(settings or {})
    lines = ["%s = %s" % (k, toml_value(v)) for k, v in merged.items()]
    for route in routes:
        lines.append("")
        lines.append("[[route]]")
        lines.extend("%s = %s" % (k, toml_value(v)) for k, v in route.items())
    return "\n".join(lines) + "\n"


class Gateway:
    """idem-gateway in its own process, on free ports, in front of `upstream_url`.

    `settings`/`routes` become its config file (see render_config); `config_text` gives the
    file verbatim instead. `store` is a --store value (default: the run's store kind)."""

    def __init__(self, upstream_url, settings=None, routes=(), config_text=None, store=None,
                 extra_args=(), base=True, start=True):
        if not GATEWAY:
            raise RuntimeError("no gateway binary: pass --gateway or set IDEM_GATEWAY")
        self.upstream_url = upstream_url
        self.port = free_port()
        self.admin_port = free_port()
        self.store = store if store is not None else store_spec()
        name = "gateway-%d" % self.port
        self.log = os.path.join(workdir(), name + ".log")
        if config_text is None:
            config_text = render_config(settings, routes, base)
        self.config_path = os.path.join(workdir(), name + ".toml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.args = [GATEWAY, "--listen", "127.0.0.1:%d" % self.port,
                     "--upstream", upstream_url,
                     "--admin", "127.0.0.1:%d" % self.admin_port,
                     "--store", self.store, "--config", self.config_path] + list(extra_args)
        self.proc = None
        if start:
            self.start()

    def start(self, timeout=15.0):
        self.proc = _spawn(self.args, self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("idem-gateway exited with %d at start:\n%s" %
                                   (self.proc.returncode, self.output()))
            try:
                if http_request(self.admin_port, "GET", "/healthz", timeout=1).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("idem-gateway not healthy after %.0f s:\n%s" % (timeout,
                                                                         self.output()))

    def output(self):
        return _read(self.log)

    def send_signal(self, signum):
        self.proc.send_signal(signum)

    def stop(self, timeout=15.0, signum=signal.SIGTERM):
        """Stops the gateway with `signum` and returns its exit code (None if it had to be
        killed after `timeout`)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    # -- public listener

    def request(self, method, path, body=None, headers=(), key=None, timeout=10.0,
                source=None):
        headers = list(headers)
        if key is not None:
            headers.append(("Idempotency-Key", key))
        return http_request(self.port, method, path, body, headers, timeout, source)

    def post(self, path, body=None, headers=(), key=None, **kwargs):
        return self.request("POST", path, body, headers, key, **kwargs)

    # -- admin listener

    def admin(self, method, path, timeout=10.0):
        return http_request(self.admin_port, method, path, timeout=timeout)

    def key_path(self, key, scope=None):
        path = "/keys/" + urllib.parse.quote(key, safe="")
        if scope is not None:
            path += "?scope=" + urllib.parse.quote(scope, safe="")
        return path

    def get_key(self, key, scope=None):
        return self.admin("GET", self.key_path(key, scope))

    def delete_key(self, key, scope=None):
        return self.admin("DELETE", self.key_path(key, scope))

    def metrics(self):
        """The Prometheus text of /metrics as {(name, ((label, value), ...)): float}."""
        r = self.admin("GET", "/metrics")
        if r.status != 200:
            raise AssertionError("GET /metrics answered %d" % r.status)
        return parse_prometheus(r.body.decode())

    def requests_total(self, outcome):
        return self.metrics().get(("idem_requests_total", (("outcome", outcome),)), 0.0)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        try:
            samples[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            pass
    return samples


def run_parallel(fn, args_list, timeout=60.0):
    """Runs fn(*args) for each args in threads started together; returns results in order
    (an exception is returned in place of a result)."""
    results = [None] * len(args_list)
    barrier = threading.Barrier(len(args_list))

    def run(i, args):
        try:
            barrier.wait(10)
            results[i] = fn(*args)
        except Exception as e:  # noqa: BLE001 - reported to the caller
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, a), daemon=True)
               for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise AssertionError("parallel requests did not finish in %.0f s" % timeout)
    return results
