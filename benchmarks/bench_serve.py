"""``ldengine serve`` under load, on loopback: how long a 1-token request waits while a
long request runs, and how fast an over-budget request is refused.

    .venv/bin/python benchmarks/bench_serve.py [--prompts 8] [--prompt-tokens 1000]
        [--write-tokens 256] [--timeout 600] [--write]

Long requests (each within the server's default budget): ``echo`` scores
``--prompts`` unrelated prompts of ``--prompt-tokens`` tokens (the issue's 8 x
1,000), ``write`` writes ``--write-tokens`` tokens after a counting prompt. While
one runs, 1-token requests (``max_tokens: 1, logprobs: 1``) go one after another
until it ends. (The server before FastAPI, http.server with one lock, is measured in
RESULTS.md; its module no longer exists.)
Every request has a client timeout (``--timeout``), so the run is bounded.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402
from ldengine.models import load_student  # noqa: E402

WORDS = "apple river stone cloud green quick lamp house north table".split()


def post(url: str, path: str, body: dict, timeout: float) -> tuple[int, float]:
    """(status, seconds) of one request on a fresh connection."""
    parts = urllib.parse.urlsplit(url)
    start = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("POST", parts.path + path, body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    except OSError:
        return 0, time.perf_counter() - start     # 0: the client gave up (timeout)
    finally:
        connection.close()


def prompt_of(student, seed: int, tokens: int) -> str:
    """A prompt of about ``tokens`` tokens that shares no beginning with another seed's."""
    words = " ".join(WORDS[(seed * 7 + i * i) % len(WORDS)] for i in range(tokens * 2))
    ids = student.tokenizer(f"{seed}: {words}", add_special_tokens=False)["input_ids"][:tokens]
    return student.tokenizer.decode(ids)


def long_requests(student, name: str, args) -> dict:
    prompts = [prompt_of(student, i, args.prompt_tokens) for i in range(args.prompts)]
    return {"echo": ("/completions", {"model": name, "prompt": prompts, "max_tokens": 0, "echo": True,
                                      "logprobs": 0}),
            "write": ("/completions", {"model": name, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,",
                                       "max_tokens": args.write_tokens})}


def under_load(url: str, name: str, long: tuple[str, dict], args) -> dict:
    """Latencies of back-to-back 1-token requests while ``long`` runs, and its own time."""
    short = {"model": name, "prompt": "Rules:", "max_tokens": 1, "logprobs": 1}
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(long=post(url, *long, args.timeout)))
    thread.start()
    time.sleep(1.0)            # the long request is read, tokenised and on the model by then
    latencies = []
    while thread.is_alive():
        status, seconds = post(url, "/completions", short, args.timeout)
        latencies.append((status, seconds))
    thread.join()
    return {"long_status": result["long"][0], "long_s": result["long"][1], "short": latencies}


def serve(module, student, name: str):
    server = module.make_server(student, "127.0.0.1", 0, name)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def run(label: str, module, student, args) -> list[str]:
    name = student.name
    server, thread = serve(module, student, name)
    try:
        idle = statistics.median(post(server.url, "/completions", {"model": name, "prompt": "Rules:",
                                                                   "max_tokens": 1, "logprobs": 1}, 60)[1]
                                 for _ in range(5))
        rows = []
        for kind, long in long_requests(student, name, args).items():
            got = under_load(server.url, name, long, args)
            waits = [s for _, s in got["short"]]
            statuses = sorted({st for st, _ in got["short"]})
            rows.append(f"| {label} | {kind} | {got['long_status']} in {got['long_s']:.1f} s | {idle * 1e3:.0f} ms "
                        f"| {len(waits)} | {statistics.median(waits):.2f} s | {max(waits):.2f} s "
                        f"| {', '.join(map(str, statuses))} |")
        return rows
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def refusal(student, args) -> str:
    """How fast the current server refuses the issue's request once over budget (8 x 1,050 tokens)."""
    from ldengine.serving import server as module
    server, thread = serve(module, student, student.name)
    try:
        prompts = [prompt_of(student, i, 1050) for i in range(8)]
        status, seconds = post(server.url, "/completions", {"model": student.name, "prompt": prompts,
                                                            "max_tokens": 0, "echo": True, "logprobs": 0}, 60)
        return f"8 prompts of 1,050 tokens with echo (8,400 read > 8,192): HTTP {status} in {seconds * 1e3:.0f} ms"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--write-tokens", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=600, help="client timeout of each request, seconds")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args()
    student = load_student()
    from ldengine.serving import server as current
    rows = run("FastAPI + uvicorn, turns per pass", current, student, args)
    lines = [f"## ldengine serve: a 1-token request while a long one runs ({time.strftime('%Y-%m-%d')})", "",
             machine_line("bench_serve.py", sys.argv[1:]), "",
             f"Long requests: echo = {args.prompts} unrelated prompts of {args.prompt_tokens} tokens scored with "
             f"`echo` (max_tokens 0, logprobs 0); write = {args.write_tokens} tokens written after a short prompt. "
             "During each, 1-token requests (max_tokens 1, logprobs 1) one after another until it ends.", "",
             "| server | long request | long: status, wall | 1-token alone | 1-token requests during | "
             "median wait | longest wait | their statuses |",
             "|---|---|---|---|---|---|---|---|", *rows, "", refusal(student, args), ""]
    publish("\n".join(lines), args.write)


if __name__ == "__main__":
    main()
