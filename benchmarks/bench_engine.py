"""Engine benchmarks: expert games per second through the sandbox, the sandbox's
per-call overhead against a native call of the same function (in-process and
isolated), and peak memory.

    .venv/bin/python benchmarks/bench_engine.py [--games 200] [--calls 2000] [--write]

The native baseline compiles the teacher's module with plain ``compile()``; that
happens here only, to measure what the sandbox costs, never in the engine.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ldengine.agents import AgentContext, expert_agent  # noqa: E402
from ldengine.functionbase import FunctionBase  # noqa: E402
from ldengine.registry import Registry  # noqa: E402
from ldengine.sandbox import IsolatedSandbox  # noqa: E402
from benchmarks.common import machine_line, publish  # noqa: E402


def bench_games(registry, games: int) -> dict:
    task = registry.get("tasks", "pursuit").obj
    greedy = registry.get("evaders", "greedy").obj
    base = FunctionBase.build("pursuit", registry.modules_for("pursuit"))
    agent = expert_agent(AgentContext(task, base))
    start = time.perf_counter()
    results = [task.play(agent, i, i, greedy, lambda r: None) for i in range(games)]
    wall = time.perf_counter() - start
    summary = task.summarize(results)
    steps = sum(r.steps for r in results)
    return {"games": games, "wall_s": wall, "games_per_s": games / wall,
            "steps_per_s": steps / wall, "success": summary["success"],
            "avg_steps_success": summary["avg_steps_success"],
            "sandbox_calls": base.sandbox.calls if hasattr(base.sandbox, "calls") else None}


def sample_inputs(registry, base, n: int = 50) -> dict[str, list]:
    """Real stage inputs, recorded from expert games."""
    task = registry.get("tasks", "pursuit").obj
    greedy = registry.get("evaders", "greedy").obj
    inputs = {stage: [] for stage in task.pipeline}
    agent = expert_agent(AgentContext(task, base))
    for seed in range(5):
        game, rng = task.new_game(seed)
        while game.outcome is None and len(inputs[task.pipeline[0]]) < n:
            value = game.state()
            for stage in task.pipeline:
                inputs[stage].append(value)
                value = base.call(base.oracle(stage, value).name, value).value
            game.pursuer_step(agent.act(game.state()))
            if game.outcome is None:
                game.evader_step(lambda legal, g: greedy(legal, g.pursuers, rng))
    return inputs


def native_functions(base) -> dict:
    namespace_by_module = {}
    for name, module in base.modules.items():
        ns: dict = {}
        exec(compile(module.source, name, "exec"), ns)  # benchmark baseline only
        namespace_by_module[name] = ns
    return {e.name: namespace_by_module[e.module][e.def_name] for e in base.entries.values()}


def per_call(fn, inputs, calls: int) -> float:
    """Median seconds per call over ``calls`` calls cycling through real inputs."""
    times = []
    for i in range(calls):
        arg = inputs[i % len(inputs)]
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_overhead(registry, calls: int) -> list[dict]:
    base = FunctionBase.build("pursuit", registry.modules_for("pursuit"))
    task = registry.get("tasks", "pursuit").obj
    inputs, native = sample_inputs(registry, base), native_functions(base)
    rows = []
    with IsolatedSandbox() as iso:
        for stage in task.pipeline:
            entry = base.oracle(stage)
            module = base.modules[entry.module]
            rows.append({
                "function": entry.name,
                "native_us": per_call(native[entry.name], inputs[stage], calls) * 1e6,
                "inprocess_us": per_call(lambda a: base.call(entry.name, a), inputs[stage], calls) * 1e6,
                "isolated_us": per_call(lambda a: iso.call(module, entry.def_name, a), inputs[stage],
                                        max(50, calls // 10)) * 1e6,
            })
    return rows


def report(games: dict, rows: list[dict], peak_mb: float, argv: list[str]) -> str:
    lines = [f"### Engine ({time.strftime('%Y-%m-%d')})", "",
             machine_line("bench_engine.py", argv), "",
             f"- expert vs greedy evader, seeds 0-{games['games'] - 1}: success {games['success']:.3f}, "
             f"average steps of success {games['avg_steps_success']:.2f}",
             f"- {games['games_per_s']:.1f} games/s, {games['steps_per_s']:.0f} steps/s through the "
             f"in-process sandbox ({games['wall_s']:.2f} s wall)",
             f"- peak resident memory of the benchmark process: {peak_mb:.0f} MB", "",
             "| function | native µs/call | in-process sandbox µs/call | isolated worker µs/call |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['function']} | {r['native_us']:.1f} | {r['inprocess_us']:.1f} "
                     f"({r['inprocess_us'] / r['native_us']:.1f}x) | {r['isolated_us']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args()
    registry = Registry.load()
    games = bench_games(registry, args.games)
    rows = bench_overhead(registry, args.calls)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = report(games, rows, peak, sys.argv[1:])
    publish(text, args.write)


if __name__ == "__main__":
    main()
