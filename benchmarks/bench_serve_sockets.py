"""``ldengine serve`` under a socket flood on loopback: is a request with the key still answered?

    .venv/bin/python benchmarks/bench_serve_sockets.py [--idle N] [--slow 50] [--seconds 30] [--write]

Starts ``ldengine serve`` with an API key (``$LDENGINE_API_KEY``) as a user would, then, all
from this process on 127.0.0.1 (so attacker and user share one client address):

- idle sockets up to this process's descriptor limit (``--idle``, default: the limit less
  300), which say nothing; the server closes them; each second the closed ones are opened
  again, so the caps stay full for the whole run;
- ``--slow`` clients sending a request's line and headers one byte every 0.5 s, each
  opening a new connection when the server closes its old one;
- every second for ``--seconds``: a request with the key on a fresh connection (GET
  /v1/models, then a 1-token completion) and one without the key.

It reports the requests' status and wall time, how long the server kept idle and slow
connections open, and the server's open descriptors, peak RSS and log size.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402

KEY = "bench-key"
SLOW_REQUEST = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_figures(pid: int) -> dict:
    """The server's open descriptors and peak RSS (MB)."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        peak = next(int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return {"fds": -1, "peak_mb": float("nan")}
    return {"fds": fds, "peak_mb": peak}


CONNECTS: list[float] = []       # seconds each request's connect() took (the kernel's accept queue)


def call(port: int, method: str, path: str, body: dict | None, key: str | None, timeout: float) -> tuple[int, float]:
    """(status, seconds) of one request on a fresh connection; status 0: no answer (closed or timed out)."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        connection.connect()
        CONNECTS.append(time.perf_counter() - start)
        connection.request(method, path, body=json.dumps(body).encode() if body else None, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    except (OSError, http.client.HTTPException):
        return 0, time.perf_counter() - start
    finally:
        connection.close()


class Flood(threading.Thread):
    """Idle and slow-header sockets to ``port``, kept up until ``stop`` is set."""

    def __init__(self, port: int, idle: int, slow: int, reopen: bool):
        super().__init__(daemon=True)
        self.port, self.idle_target, self.slow_target, self.reopen = port, idle, slow, reopen
        self.selector = selectors.DefaultSelector()
        self.opened = {"idle": 0, "slow": 0}
        self.failed_connects = 0
        self.held = {"idle": [], "slow": []}       # seconds from connect to the server's close
        self.live: dict[socket.socket, list] = {}  # socket -> [kind, opened at, bytes sent]
        self.stop = threading.Event()
        self.ready = threading.Event()

    def connect(self, kind: str) -> bool:
        sock = socket.socket()
        sock.settimeout(0.5)
        try:
            sock.connect(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            self.failed_connects += 1
            return False
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)
        self.live[sock] = [kind, time.monotonic(), 0]
        self.opened[kind] += 1
        return True

    def count(self, kind: str) -> int:
        return sum(1 for v in self.live.values() if v[0] == kind)

    def top_up(self) -> None:
        for kind, target in (("slow", self.slow_target), ("idle", self.idle_target if self.reopen else 0)):
            for _ in range(target - self.count(kind)):
                if self.stop.is_set() or not self.connect(kind):
                    break

    def run(self) -> None:
        for _ in range(self.idle_target):
            if not self.connect("idle"):
                break
        self.top_up()
        self.ready.set()
        last_byte, last_top_up = time.monotonic(), time.monotonic()
        while not self.stop.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:                      # closed by the server
                    kind, opened, _ = self.live.pop(sock)
                    self.held[kind].append(time.monotonic() - opened)
                    self.selector.unregister(sock)
                    sock.close()
            now = time.monotonic()
            if now - last_byte >= 0.5:
                last_byte = now
                for sock, state in self.live.items():
                    if state[0] == "slow" and state[2] < len(SLOW_REQUEST):
                        try:
                            sock.send(SLOW_REQUEST[state[2]:state[2] + 1])
                            state[2] += 1
                        except OSError:
                            pass
            if now - last_top_up >= 1.0:
                last_top_up = now
                self.top_up()
        for sock in list(self.live):
            sock.close()

    def overdue(self, limit_s: float) -> int:
        """Sockets still open that were opened more than ``limit_s`` ago."""
        now = time.monotonic()
        return sum(1 for v in list(self.live.values()) if now - v[1] > limit_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, help="idle sockets (default: this process's descriptor limit less 300)")
    parser.add_argument("--slow", type=int, default=50, help="slow-header clients")
    parser.add_argument("--seconds", type=int, default=30, help="how long the flood lasts while requests are made")
    parser.add_argument("--reopen", action="store_true", help="open the idle sockets the server closed again each "
                        "second (a storm of connections), not only once")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="the server's --header-timeout")
    parser.add_argument("--label", default="", help="words added to the heading (e.g. which code ran)")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idle = args.idle if args.idle is not None else hard - 300
    port = free_port()
    log_dir = tempfile.mkdtemp(prefix="ldengine-bench-")
    log_path = Path(log_dir) / "serve.log"
    env = {**os.environ, "LDENGINE_API_KEY": KEY}
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "ldengine", "serve", "--port", str(port),
                                   "--header-timeout", str(args.header_timeout)],
                                  stdout=log, stderr=log, env=env, cwd=ROOT)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and call(port, "GET", "/v1/models", None, KEY, 5)[0] != 200:
            if server.poll() is not None:
                sys.exit(f"the server stopped: {log_path.read_text()[-2000:]}")
            time.sleep(1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        model = json.loads(connection.getresponse().read())["data"][0]["id"]
        connection.close()
        before = server_figures(server.pid)
        flood = Flood(port, idle, args.slow, args.reopen)
        start = time.monotonic()
        flood.start()
        flood.ready.wait(600)
        opened_s = time.monotonic() - start
        authorised, completions, anonymous = [], [], []
        fds = [before["fds"]]
        for _ in range(args.seconds):
            authorised.append(call(port, "GET", "/v1/models", None, KEY, 10))
            completions.append(call(port, "POST", "/v1/completions",
                                    {"model": model, "prompt": "Rules:", "max_tokens": 1},
                                    KEY, 10))
            anonymous.append(call(port, "GET", "/v1/models", None, None, 10))
            fds.append(server_figures(server.pid)["fds"])
            time.sleep(1)
        overdue = flood.overdue(args.header_timeout + 2)
        flood.stop.set()
        flood.join(60)
        after = server_figures(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    log_bytes = log_path.stat().st_size
    ok = lambda rows: sum(1 for s, _ in rows if s == 200)
    worst = lambda rows: max(t for _, t in rows)
    med = lambda rows: statistics.median(t for _, t in rows)
    held = {k: (max(v) if v else float("nan")) for k, v in flood.held.items()}
    lines = [f"### ldengine serve under a socket flood on loopback{': ' + args.label if args.label else ''} "
             f"({time.strftime('%Y-%m-%d')})", "",
             machine_line("bench_serve_sockets.py", sys.argv[1:]), "",
             f"Flood from 127.0.0.1, the same address as the user: {idle:,} idle sockets (this process's "
             f"descriptor limit is {hard:,}; all opened in {opened_s:.1f} s"
             + (f", closed ones opened again each second: {flood.opened['idle']:,} connections in all" if args.reopen
                else ", once, then held") + f"; {flood.failed_connects:,} connects that failed) and "
             f"{args.slow} slow-header clients, each opening a new connection when one is closed "
             f"({flood.opened['slow']:,} connections), for {args.seconds} s; "
             f"server `--header-timeout {args.header_timeout:g}`, other limits the defaults.", "",
             "| request (one a second, fresh connection) | answered 200 | median | worst |",
             "|---|---|---|---|",
             f"| GET /v1/models with the key | {ok(authorised)}/{len(authorised)} | {med(authorised):.3f} s | "
             f"{worst(authorised):.3f} s |",
             f"| 1-token completion with the key | {ok(completions)}/{len(completions)} | {med(completions):.3f} s | "
             f"{worst(completions):.3f} s |",
             f"| GET /v1/models without the key | {ok(anonymous)}/{len(anonymous)} "
             f"(statuses {sorted({s for s, _ in anonymous})}) | {med(anonymous):.3f} s | {worst(anonymous):.3f} s |",
             "",
             f"Longest an idle connection stayed open: {held['idle']:.1f} s; a slow-header one: {held['slow']:.1f} s; "
             f"open longer than the header timeout + 2 s at the end: {overdue}. The requests' connect(): median "
             f"{statistics.median(CONNECTS) * 1000:.1f} ms, worst {max(CONNECTS):.3f} s (a full accept queue "
             f"drops a SYN, which the client sends again after 1 s, then 3 s). Server: {before['fds']} descriptors "
             f"before, at most {max(fds)} during; peak RSS {before['peak_mb']:.0f} MB before, "
             f"{after['peak_mb']:.0f} MB after; log {log_bytes:,} bytes in all."]
    publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
