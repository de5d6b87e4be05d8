"""Games per minute per agent on this CPU, as `ldengine eval` plays them.

    .venv/bin/python benchmarks/bench_eval.py [--games expert=50,ld=20,student=16,kd=8] [--write]
    .venv/bin/python benchmarks/bench_eval.py --from results/table1 [--write]

Each agent plays its games (seeds 0..N-1, greedy evader) through `evaluate`, in
a fresh output folder; the figures are its results.json cost: games per
minute (model loading excluded, given apart), model calls and tokens per game,
and average steps per game (text agents' games are short when they fail on
violations, so games per minute alone flatters them). ``--from DIR`` reports the
same figures from a finished eval instead (e.g. the 200-game Table 1 run).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402


def figures(results: dict, rows: list[dict]) -> list[str]:
    lines = ["| agent | games | games/min | steps/game | model calls/game | tokens/game | load s |",
             "|---|---|---|---|---|---|---|"]
    for name, s in results["agents"].items():
        if "cost" not in s:
            continue
        mine = [r for r in rows if r["agent"] == name and r["outcome"] != "error"]
        n = max(len(mine), 1)
        steps = sum(r["steps"] for r in mine) / n
        c = s["cost"]
        lines.append(f"| {name} | {len(mine)} | {c['games_per_min']:.1f} | {steps:.1f} | "
                     f"{c['model_calls'] / n:.1f} | {c['tokens'] / n:.0f} | {c['load_s']} |")
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", default="expert=50,ld=20,student=16,kd=8")
    parser.add_argument("--from", dest="source", help="report a finished eval folder instead of playing")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from ldengine.evaluate import EvalConfig, evaluate, read_games
    if args.source:
        out = Path(args.source)
        results = json.loads((out / "results.json").read_text())
        lines = figures(results, read_games(out))
        title = f"eval games per minute, from {out} ({results['manifest']['config']})"
    else:
        from ldengine.registry import Registry
        registry = Registry.load()
        lines, title = [], "eval games per minute"
        table = dict(pair.split("=") for pair in args.games.split(","))
        for i, (agent, games) in enumerate(table.items()):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = EvalConfig(agents=[agent], games=int(games), seed=0, out=tmp, figures=False,
                                 progress=False)
                results = evaluate(registry, cfg, log=lambda s: None)
                part = figures(results, read_games(Path(tmp)))
                lines += part if i == 0 else part[2:]
    text = "\n".join([f"## {title}", "", machine_line("bench_eval.py", argv), "", *lines, ""])
    publish(text, args.write)


if __name__ == "__main__":
    main(sys.argv[1:])
