"""``ldengine serve``'s memory for one request of many prompts that share a long beginning.

    .venv/bin/python benchmarks/bench_serve_memory.py [--prompts 32] [--prefix-tokens 2035]
        [--row-tokens N] [--write]

The server runs as its own process on loopback; one request of ``--prompts`` prompts, each
a shared beginning of ``--prefix-tokens`` tokens and a few tokens of its own, asks for the next
token (``max_tokens: 1``, ``logprobs: 1``). The server's peak resident memory (VmHWM) is read
before and after. Every row of a forward pass holds its own copy of the shared beginning's keys
and values, so a pass is bounded by rows x (prefix + tail) tokens (``serving.model.ROW_TOKENS``);
``--row-tokens`` sets that bound for the run (a huge value gives the grouping by tails alone,
as before the bound existed).
"""
from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402

SERVER = ("import sys; import ldengine.serving.model as m; m.ROW_TOKENS = int(sys.argv[1]); "
          "from ldengine.cli import cli; cli(sys.argv[2:])")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def request(port: int, body: dict, timeout: float) -> tuple[int, float, dict]:
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/v1/completions", body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read() or b"{}")
        return response.status, time.perf_counter() - start, answer
    finally:
        connection.close()


def measure(row_tokens: int, args) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(row_tokens), "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if request(port, {"model": "x", "prompt": "Rules:", "max_tokens": 1}, 30)[0]:
                    break
            except OSError:
                time.sleep(1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/v1/models")
        name = json.loads(connection.getresponse().read())["data"][0]["id"]
        connection.close()
        idle = peak_mb(server.pid)
        prefix = " ".join(f"word{i % 50}" for i in range(args.prefix_tokens))   # about 3 tokens a word
        prompts = [f"{prefix} {i}: the next" for i in range(args.prompts)]
        status, seconds, answer = request(port, {"model": name, "prompt": prompts, "max_tokens": 1, "logprobs": 1},
                                          600)
        return {"row_tokens": row_tokens, "idle_mb": idle, "peak_mb": peak_mb(server.pid), "status": status,
                "seconds": seconds, "prompt_tokens": (answer.get("usage") or {}).get("prompt_tokens")}
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--prefix-tokens", type=int, default=700, help="words in the shared beginning "
                        "(700 words are about 2,000 tokens for SmolLM2's tokenizer)")
    parser.add_argument("--row-tokens", type=int, action="append",
                        help="the bound on rows x (prefix + tail) tokens of a pass (repeatable; default: the "
                             "server's own, and 10**9 for the grouping by tails alone)")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args()
    from ldengine.serving.model import ROW_TOKENS
    rows = [measure(n, args) for n in (args.row_tokens or [10**9, ROW_TOKENS])]
    lines = [f"## ldengine serve: memory of one request of {args.prompts} prompts sharing a long beginning "
             f"({time.strftime('%Y-%m-%d')})", "", machine_line("bench_serve_memory.py", sys.argv[1:]), "",
             "| bound on rows x (prefix + tail) tokens per pass | prompt tokens (usage) | status | wall | "
             "server peak RSS idle | server peak RSS after the request |", "|---|---|---|---|---|---|"]
    for r in rows:
        bound = "none (tails alone, as before)" if r["row_tokens"] >= 10**9 else f"{r['row_tokens']:,}"
        lines.append(f"| {bound} | {r['prompt_tokens']} | {r['status']} | {r['seconds']:.1f} s | "
                     f"{r['idle_mb']:.0f} MB | {r['peak_mb']:.0f} MB |")
    publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
