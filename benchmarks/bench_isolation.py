"""Isolation: what running every function in the isolated worker costs.

(a) the round trip of a trivial function call, isolated (warm worker) against
in-process, median and p90 over ``--calls`` calls, and a worker's start-up;
(b) expert pursuit games through the runner (the ``ldengine run pursuit --agent
expert`` path) with the whole shipped base isolated (the default) against
in-process (``LDENGINE_SANDBOX=inprocess``), in alternating rounds: games per
second and the ratio of wall times (the best round of each, and the median),
and CPU seconds per game (this process plus the worker), which load on the
machine disturbs much less than wall time; the outcomes must be the same;
(c) what the in-process CPU-time alarm costs: the same games in-process without it.

    .venv/bin/python benchmarks/bench_isolation.py [--calls 2000] [--games 25] [--rounds 8] [--write]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402
from ldengine.registry import Registry  # noqa: E402
from ldengine.runner import RunConfig, run_games  # noqa: E402
from ldengine.sandbox import DEFAULT_LIMITS, IsolatedSandbox, Sandbox, compile_module  # noqa: E402
from ldengine.sandbox import inprocess, isolated  # noqa: E402

TRIVIAL = "def f(x):\n    return x\n"


def round_trips(call, calls: int) -> tuple[float, float]:
    """Median and p90 seconds of ``calls`` calls, after 50 warm-up calls."""
    for i in range(50):
        call(i)
    times = []
    for i in range(calls):
        start = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)]


def bench_round_trip(calls: int) -> dict:
    local = Sandbox()
    trusted = compile_module(TRIVIAL)
    out = {"inprocess": round_trips(lambda i: local.call(trusted, "f", i), calls)}
    with IsolatedSandbox() as isolated:
        untrusted = compile_module(TRIVIAL, load=False)
        start = time.perf_counter()
        isolated.call(untrusted, "f", 0)
        out["startup_s"] = time.perf_counter() - start
        out["isolated"] = round_trips(lambda i: isolated.call(untrusted, "f", i), calls)
    return out


def cpu_seconds() -> float:
    """CPU time of this process and of the shared pool's warm worker (from /proc)."""
    own = os.times()
    total = own.user + own.system
    pid = isolated._shared_pool(DEFAULT_LIMITS).idle_pid()
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def play(registry, games: int, mode: str) -> dict:
    os.environ["LDENGINE_SANDBOX"] = mode
    run_games(registry, RunConfig(games=1, progress=False))  # warm: worker started, modules sent
    cpu, start = cpu_seconds(), time.perf_counter()
    summary = run_games(registry, RunConfig(games=games, progress=False)).summary
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"wall_s": wall, "cpu_s": cpu,
            "outcome": (summary["success"], summary["avg_steps_success"], summary["violations"])}


def bench_games(registry, games: int, rounds: int) -> dict:
    walls = {"isolated": [], "inprocess": [], "no_alarm": []}
    cpus = {"isolated": [], "inprocess": [], "no_alarm": []}
    outcomes = set()
    guarded = inprocess.guarded_call
    for _ in range(rounds):  # alternating, so a burst of load on the machine hits both
        for mode in ("isolated", "inprocess", "no_alarm"):
            if mode == "no_alarm":
                inprocess.guarded_call = lambda function, args, cpu_s: function(*args)
            try:
                played = play(registry, games, "inprocess" if mode == "no_alarm" else mode)
            finally:
                inprocess.guarded_call = guarded
            walls[mode].append(played["wall_s"])
            cpus[mode].append(played["cpu_s"])
            outcomes.add(played["outcome"])
    os.environ.pop("LDENGINE_SANDBOX", None)
    return {"walls": walls, "cpus": cpus, "outcomes": outcomes}


def report(rt: dict, played: dict, args: argparse.Namespace) -> str:
    med = {mode: statistics.median(w) for mode, w in played["walls"].items()}
    best = {mode: min(w) for mode, w in played["walls"].items()}
    cpu = {mode: statistics.median(c) / args.games * 1e3 for mode, c in played["cpus"].items()}
    per_game = {mode: args.games / w for mode, w in best.items()}
    (iso_med, iso_p90), (loc_med, loc_p90) = rt["isolated"], rt["inprocess"]
    lines = [f"### Isolation: round trip and games per second ({time.strftime('%Y-%m-%d')})", "",
             machine_line("bench_isolation.py", sys.argv[1:]), "",
             f"- round trip of a trivial call (`def f(x): return x`), {args.calls} calls: isolated "
             f"median {iso_med * 1e6:.0f} µs, p90 {iso_p90 * 1e6:.0f} µs; in-process median "
             f"{loc_med * 1e6:.1f} µs, p90 {loc_p90 * 1e6:.1f} µs; starting a worker: {rt['startup_s'] * 1e3:.0f} ms",
             f"- expert pursuit games, {args.games} per run, {args.rounds} alternating runs per mode, best run: "
             f"isolated {per_game['isolated']:.1f} games/s, in-process {per_game['inprocess']:.1f} games/s, "
             f"ratio of wall times {best['isolated'] / best['inprocess']:.2f}x (of the medians "
             f"{med['isolated'] / med['inprocess']:.2f}x; runs: isolated "
             f"{', '.join(f'{w:.2f}' for w in played['walls']['isolated'])} s; in-process "
             f"{', '.join(f'{w:.2f}' for w in played['walls']['inprocess'])} s)",
             f"- CPU time per game (this process + worker), median: isolated {cpu['isolated']:.1f} ms, "
             f"in-process {cpu['inprocess']:.1f} ms, ratio {cpu['isolated'] / cpu['inprocess']:.2f}x",
             f"- in-process without the CPU-time alarm: {per_game['no_alarm']:.1f} games/s best run, "
             f"{cpu['no_alarm']:.1f} ms CPU per game (the alarm costs "
             f"{(cpu['inprocess'] / cpu['no_alarm'] - 1) * 100:+.1f}% CPU)",
             f"- outcomes (success, average steps of success, violations), identical in every run: "
             f"{sorted(played['outcomes'])}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--games", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args()
    rt = bench_round_trip(args.calls)
    played = bench_games(Registry.load(), args.games, args.rounds)
    publish(report(rt, played, args), args.write)


if __name__ == "__main__":
    main()
