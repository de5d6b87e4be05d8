"""Five rules of our own, in words no template of the rule language uses: the student writes
each one's function, and games are played with it in force.

    .venv/bin/python benchmarks/bench_own_rules.py [--adapter DIR] [--games 20] [--attempts 8]
        [--out results/own-rules] [--write]

Each rule runs through the command line exactly as a user would run it:
``ldengine emergency TEXT --allow ... --forbid ... --yes`` (the student writes, the
isolated worker checks the two allowed and two forbidden example moves, the board map is
shown and, with ``--yes``, its moves become the rule's examples), then
``ldengine eval pursuit --agents ld,expert --emergency NAME``. Beside what the engine
checks, this script knows each rule's intended meaning (a condition over the move written
here by hand, never shown to the student) and compares the stored function's map with it
on every single move of the board: "exact", or how many moves it gets wrong.
The stored functions go to a throwaway folder (``LDENGINE_EMERGENCY_DIR``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402

# (words, allowed moves, forbidden moves, the intended forbidden condition over x, y, px, py)
RULES = [
    ("Ice covers the middle column: pursuers must never finish a move on a square whose x is 10.",
     ["9,5", "11,14"], ["10,5", "10,12"], lambda x, y, px, py: x == 10),
    ("Pursuers refuse to step on the long diagonal that runs from the bottom-left corner to the "
     "top-right one.", ["4,5", "12,11"], ["5,5", "13,13"], lambda x, y, px, py: x == y),
    ("A pond fills the squares from (6,6) to (9,9), edges included; pursuers have to go around it.",
     ["5,7", "10,8"], ["6,6", "9,8"], lambda x, y, px, py: 6 <= x <= 9 and 6 <= y <= 9),
    ("Two-square jumps must be straight: a pursuer that moves two squares may not change both its "
     "x and its y.", ["5,5>7,5", "5,5>5,3"], ["5,5>6,6", "5,5>4,6"],
     lambda x, y, px, py: abs(x - px) + abs(y - py) == 2 and x != px and y != py),
    ("Pursuers that start a move in the bottom-left quarter (x and y both under 10) cannot move "
     "to the left.", ["5,5>6,5", "12,12>11,12"], ["5,5>4,5", "3,8>2,7"],
     lambda x, y, px, py: px < 10 and py < 10 and x < px),
]


def ldengine(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ldengine"), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT)


def against_intent(provenance: dict, intended, size: int = 21) -> str:
    """The stored function's forbidden moves (its confirmed map) against the intended rule on
    every single move of the board."""
    from ldengine_plugins.pursuit.rule_shapes import move_domain
    forbidden = {(tuple(src), tuple(dst)) for src, dst in provenance["custom_rule"]["forbidden"]}
    wrong = sum((((px, py), (x, y)) in forbidden) != bool(intended(x, y, px, py))
                for x, y, px, py in move_domain(size).moves)
    return "exact" if not wrong else f"{wrong:,} of {len(move_domain(size).moves):,} moves wrong"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", help="writing adapter (default: the committed one)")
    parser.add_argument("--games", type=int, default=20)
    parser.add_argument("--attempts", type=int, default=8)
    parser.add_argument("--out", default="results/own-rules")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    env = {**os.environ, "LDENGINE_EMERGENCY_DIR": tempfile.mkdtemp(prefix="ldengine-own-rules-")}
    rows, start = [], time.perf_counter()
    for i, (text, allow, forbid, intended) in enumerate(RULES, 1):
        began = time.perf_counter()
        command = ["emergency", text, *[a for m in allow for a in ("--allow", m)],
                   *[a for m in forbid for a in ("--forbid", m)], "--yes", "--attempts", str(args.attempts),
                   *(["--adapter", args.adapter] if args.adapter else [])]
        wrote = ldengine(*command, env=env)
        stored = re.search(r"passed at attempt (\d+); stored (\S+\.py)", wrote.stdout)
        if wrote.returncode or not stored:
            reason = (wrote.stderr.strip().splitlines() or ["?"])[-1]
            rows.append(f"| {i} | {text} | - | {reason[:80]} | not played | | {time.perf_counter() - began:.0f} s |")
            print(rows[-1], flush=True)
            continue
        path = Path(stored.group(2))
        provenance = json.loads(path.with_suffix(".json").read_text())
        verdict = against_intent(provenance, intended)
        name = provenance["kind"]
        played = ldengine("eval", "pursuit", "--agents", "ld,expert", "--games", str(args.games), "--emergency",
                          name, "--out", f"{args.out}/{i}", "--no-figures", "--quiet", env=env)
        summary = json.loads((ROOT / args.out / str(i) / "results.json").read_text())["agents"] \
            if played.returncode == 0 else {}

        def cell(agent: str) -> str:
            a = summary.get(agent)
            return (f"{100 * a['success']:.0f}% / {100 * a['failure_with_violation']:.0f}%" if a
                    else (played.stderr.strip().splitlines() or ["?"])[-1][:60])
        rows.append(f"| {i} | {text} | {stored.group(1)} | {verdict} | {cell('ld')} | {cell('expert')} | "
                    f"{time.perf_counter() - began:.0f} s |")
        print(rows[-1], flush=True)
    name = Path(args.adapter).name if args.adapter else "the committed one"
    text = "\n".join([
        f"### Five rules of our own, written and played ({time.strftime('%Y-%m-%d')})", "",
        machine_line("bench_own_rules.py", argv), "",
        f"Writer adapter: {name}; up to {args.attempts} attempts, two allowed and two forbidden example moves each, "
        f"stored with `--yes`; {args.games} games per agent with the rule in force (seeds 0-{args.games - 1}). "
        f"Against intent: the stored function's map compared on every move with the meaning we meant. "
        f"{time.perf_counter() - start:.0f} s in all.", "",
        "| # | rule, in our words | attempts to pass | against intent | ld success / failure with violation | "
        "expert (not adapted) success / failure with violation | time |",
        "|---|---|---|---|---|---|---|", *rows])
    publish(text, args.write)


if __name__ == "__main__":
    main()
