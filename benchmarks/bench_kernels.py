"""One selection, memo off: each kernel-level change measured against its absence in the
same process, the two interleaved selection by selection (a shared machine's drift hits
both alike).

    .venv/bin/python benchmarks/bench_kernels.py [--heldout-games 4] [--rounds 40] [--batch 1,8] [--write]

The changes, each switchable at run time:

- ``head``: the answers' logits from the `` Yes`` and `` No`` rows of the output head only
  (``ldengine.models.selection.PLAIN_HEADS``), against the whole 49,152-row head at the K
  answer positions;
- ``gqa``: grouped-query attention inside torch's SDPA (``TRANSFORMERS_SDPA_FORCE_GQA=1``,
  set by the loader on a CPU), against transformers copying the keys and values once per
  query head, which it does whenever a mask is given.

The selections are the held-out ones of ``bench_selection.py`` (the committed adapter,
``--dtype auto``). A batch of B holds B distinct prompts of one stage (as games in lockstep
send), cycling over the held-out ones. "Same picks" compares every held-out selection with
the change on and off.
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

from benchmarks.bench_selection import held_out  # noqa: E402
from benchmarks.common import machine_line, publish  # noqa: E402


def switch(change: str, on: bool) -> None:
    import ldengine.models.selection as backend
    if change == "head":
        backend.PLAIN_HEADS = KNOWN_HEADS if on else frozenset()
    else:
        os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "1" if on else "0"


def batches(held: list, size: int, rounds: int) -> list[list[tuple]]:
    """``rounds`` batches of ``size`` distinct prompts of one stage (fewer where a stage has fewer)."""
    by_stage: dict[str, list[tuple]] = {}
    for e in held:
        by_stage.setdefault(e.stage, [])
        item = (e.prefix, e.query, tuple(e.options))
        if item not in by_stage[e.stage]:
            by_stage[e.stage].append(item)
    groups = list(by_stage.values())
    out = []
    for r in range(rounds):
        group = groups[r % len(groups)]
        out.append([(p, q, list(o)) for p, q, o in (group[(r + j) % len(group)] for j in range(min(size, len(group))))])
    return out


def main(argv: list[str]) -> None:
    global KNOWN_HEADS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout-games", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    machine = machine_line("bench_kernels.py", argv)
    import ldengine.models.selection as backend
    from ldengine.adapters import find_adapter
    from ldengine.models import load_student
    KNOWN_HEADS = backend.PLAIN_HEADS
    base, held = held_out("pursuit", args.heldout_games)
    student = load_student(adapter=find_adapter("pursuit", base), dtype="auto")
    student.memo_size = 0
    items = [(e.prefix, e.query, list(e.options)) for e in held]
    rows = []
    for change in ("head", "gqa"):
        picks = {}
        for on in (False, True):
            switch(change, on)
            picks[on] = student.select_batch(items)
        same = sum(a.index == b.index for a, b in zip(picks[False], picks[True]))
        drift = max(abs(p - q) for a, b in zip(picks[False], picks[True])
                    for p, q in zip(a.probabilities, b.probabilities))
        for size in (int(b) for b in args.batch.split(",")):
            times: dict[bool, list[float]] = {False: [], True: []}
            counts = []
            for chunk in batches(held, size, args.rounds):
                counts.append(len(chunk))
                for on in (False, True):
                    switch(change, on)
                    start = time.perf_counter()
                    student.select_batch(chunk)
                    times[on].append((time.perf_counter() - start) / len(chunk))
            off_ms, on_ms = (statistics.median(times[o]) * 1e3 for o in (False, True))
            rows.append(f"| {change} | {statistics.median(counts):.0f} | {off_ms:.1f} ms | {on_ms:.1f} ms | "
                        f"{(off_ms - on_ms) / off_ms:+.1%} | {same}/{len(items)} | {drift:.1e} |")
            print(rows[-1], flush=True)
        switch(change, True)
    lines = [f"### One selection: kernel-level changes, each against its absence ({time.strftime('%Y-%m-%d')})", "",
             machine, "",
             f"{len(items)} held-out selections (pursuit, seeds 20000...), dtype {student.dtype}, memo off; "
             f"medians over {args.rounds} batches, the change on and off interleaved; time per selection.", "",
             "| change | batch (distinct prompts of one stage) | off | on | saved | same picks | largest probability change |",
             "|---|---|---|---|---|---|---|", *rows]
    publish("\n".join(lines) + "\n", args.write)


KNOWN_HEADS: frozenset = frozenset()

if __name__ == "__main__":
    main(sys.argv[1:])
