"""The `ld` agent on pursuit, timed as a user runs it: one stage selection, one
full decision step, a whole game (wall time and peak memory) with and without the
prefix cache, and start-up from the command to the end of a one-game run, first
run (student converted, index built) and later runs.

    .venv/bin/python benchmarks/bench_ld.py [--repeats 15] [--games 3] [--write]

Selection and step figures are taken with the selection memos off (every
selection runs the model); game figures are given both ways: "shipped" has the
memos on, as `ldengine run` does.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, median_s, publish  # noqa: E402
LDENGINE = str(Path(sys.executable).with_name("ldengine"))


def build(prefix_cache: bool, memo: bool):
    from ldengine.registry import Registry
    from ldengine.runner import build_agent

    registry = Registry.load()
    task = registry.get("tasks", "pursuit").obj
    agent, _ = build_agent(registry, task, "ld")
    student, retriever = agent.selector.student, agent.provider.retriever
    student.use_prefix_cache = prefix_cache
    if not memo:
        student.memo_size = retriever.memo_size = 0
    return registry, task, agent


def inner(args) -> dict:
    """Figures of one configuration, in this process (called as a subprocess)."""
    from ldengine.ld import option_text, stage_query

    cache, memo = args.config in ("cache", "shipped"), args.config == "shipped"
    registry, task, agent = build(cache, memo)
    out = {"config": args.config}
    if not memo:
        state = task.new_game(1)[0].state()
        observed = agent.base.call("observe_positions", state).value
        candidates = agent.provider.candidates("pursuer.generate", observed)
        student, prefix = agent.selector.student, agent.selector.prefix
        query, options = stage_query(task, "pursuer.generate", observed), [option_text(c) for c in candidates]
        out["select_ms"] = median_s(lambda: student.select(prefix, query, options), args.repeats) * 1e3
        out["retrieve_ms"] = median_s(lambda: agent.provider.candidates("pursuer.generate", observed),
                                      args.repeats) * 1e3
        out["step_ms"] = median_s(lambda: agent.act(state), max(3, args.repeats // 3)) * 1e3
    evader = registry.get("evaders", "greedy").obj
    start, steps = time.perf_counter(), 0
    for i in range(args.games):
        steps += task.play(agent, i, 1 + i, evader, lambda record: None).steps
    wall = time.perf_counter() - start
    out.update(game_s=wall / args.games, steps_per_game=steps / args.games,
               peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def startup_s(cache_dir: str) -> float:
    env = {**os.environ, "LDENGINE_CACHE": cache_dir}
    start = time.perf_counter()
    subprocess.run([LDENGINE, "run", "pursuit", "--games", "1", "--quiet"], env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def report(rows: list[dict], first: float, later: float, args) -> str:
    by = {r["config"]: r for r in rows}
    nc, c, sh = by["nocache"], by["cache"], by["shipped"]
    return "\n".join([
        f"### `ld` agent on pursuit ({time.strftime('%Y-%m-%d')})", "",
        args.machine, "",
        f"Medians of {args.repeats} (steps: of {max(3, args.repeats // 3)}); games: seeds 1-{args.games}, "
        "greedy evader, each configuration in its own process.", "",
        "| | no prefix cache | prefix cache | shipped (cache + memos) |", "|---|---|---|---|",
        f"| one stage selection (student, K=5) | {nc['select_ms']:.0f} ms | {c['select_ms']:.0f} ms | |",
        f"| retrieval of the top-5 (encoder + index) | {nc['retrieve_ms']:.1f} ms | {c['retrieve_ms']:.1f} ms | |",
        f"| one full step (4 stages: retrieve, select, sandbox) | {nc['step_ms']:.0f} ms | {c['step_ms']:.0f} ms | |",
        f"| one game ({sh['steps_per_game']:.1f} steps on average) | {nc['game_s']:.1f} s | {c['game_s']:.1f} s "
        f"| {sh['game_s']:.2f} s |",
        f"| peak resident memory of the process | {nc['peak_mb']:.0f} MB | {c['peak_mb']:.0f} MB "
        f"| {sh['peak_mb']:.0f} MB |", "",
        f"Start-up to the end of `ldengine run pursuit --games 1`: first run {first:.1f} s (GGUF converted, "
        f"index built), later runs {later:.1f} s.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--games", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:
        print(json.dumps(inner(args)))
        return
    args.machine = machine_line("bench_ld.py", sys.argv[1:])  # load average before the work
    rows = []
    for config in ("nocache", "cache", "shipped"):
        cmd = [sys.executable, __file__, "--config", config, "--repeats", str(args.repeats),
               "--games", str(args.games)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    with tempfile.TemporaryDirectory(prefix="ldengine-bench-") as fresh:
        first, later = startup_s(fresh), startup_s(fresh)
    publish(report(rows, first, later, args), args.write)


if __name__ == "__main__":
    main()
