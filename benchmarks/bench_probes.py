"""Speed ideas measured and not kept: each against the shipped path, on the same inputs, with
whether it changes a choice.

    .venv/bin/python benchmarks/bench_probes.py [--heldout-games 4] [--singles 40] [--write]

- ``merged``: the selection adapter's LoRA folded into the weights (peft's ``merge_adapter``), so
  a selection runs no adapter matrices; against the adapter applied as it ships. The 128
  held-out selections of ``bench_selection.py`` (memo off), each timed alone.
- ``retriever-bf16``: the retriever's MiniLM in bfloat16 against float32, on every distinct
  stage query of the same expert games: time per query, and how often the top-K (names and
  order) is not the same.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_selection import held_out  # noqa: E402
from benchmarks.common import machine_line, publish  # noqa: E402


def single_ms(fn, items: list) -> float:
    """Median milliseconds of ``fn([item])`` over ``items``."""
    times = []
    for item in items:
        start = time.perf_counter()
        fn([item])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def merged_row(held: list, adapter: Path, singles: int) -> str:
    from ldengine.models import load_student
    student = load_student(adapter=adapter, dtype="auto")
    student.memo_size = 0
    items = [(e.prefix, e.query, list(e.options)) for e in held]
    picks, ms = {}, {}
    for mode in ("adapter", "merged"):
        if mode == "merged":
            student.model.merge_adapter()
            student._after_weights_change()    # the kept prefixes and rows were read by the other weights
            student.kv_disk_root = None         # ... and so were those stored on disk
        picks[mode] = student.select_batch(items)
        ms[mode] = single_ms(student.select_batch, items[:singles])
    same = sum(a.index == b.index for a, b in zip(picks["adapter"], picks["merged"]))
    right = [sum(p.index == e.answer for p, e in zip(picks[m], held)) for m in ("adapter", "merged")]
    drift = max(abs(p - q) for a, b in zip(picks["adapter"], picks["merged"])
                for p, q in zip(a.probabilities, b.probabilities))
    return (f"| LoRA merged into the weights | {ms['adapter']:.1f} ms | {ms['merged']:.1f} ms | "
            f"{same}/{len(items)} picks the same (right {right[0]} / {right[1]}), largest probability change "
            f"{drift:.4f} |")


def retriever_row(task, base, pairs: list) -> str:
    import torch

    from ldengine.ld import RetrieverProvider
    from ldengine.retriever import Retriever
    retriever = Retriever.for_bases([base])
    retriever.memo_size = 0
    provider = RetrieverProvider(task, base, retriever)
    queries = list(dict.fromkeys(provider.query(stage, state) for stage, state in pairs))
    found, ms = {}, {}
    for mode in ("float32", "bfloat16"):
        if mode == "bfloat16":
            retriever.encoder.model.to(torch.bfloat16)
        found[mode] = [retriever.search(q, 5) for q in queries]
        ms[mode] = single_ms(lambda qs: retriever.search(qs[0], 5), queries)
    changed = sum([n for n, _ in a] != [n for n, _ in b] for a, b in zip(found["float32"], found["bfloat16"]))
    return (f"| retriever's MiniLM in bfloat16 (a whole search) | {ms['float32']:.1f} ms | {ms['bfloat16']:.1f} ms | "
            f"top-5 (names and order) not the same for {changed} of {len(queries)} distinct stage queries |")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout-games", type=int, default=4)
    parser.add_argument("--singles", type=int, default=40, help="selections timed one by one (medians)")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    machine = machine_line("bench_probes.py", argv)
    from ldengine.adapters import find_adapter
    from ldengine.ld import stage_inputs
    from ldengine.registry import Registry
    base, held = held_out("pursuit", args.heldout_games)
    reg = Registry.load()
    task = reg.get("tasks", "pursuit").obj
    pairs = stage_inputs(task, base, reg.get("evaders", "greedy").obj, list(range(20_000, 20_000 + args.heldout_games)))
    rows = [merged_row(held, find_adapter("pursuit", base), args.singles), retriever_row(task, base, pairs)]
    for row in rows:
        print(row, flush=True)
    publish("\n".join([f"### Speed ideas measured and not kept ({time.strftime('%Y-%m-%d')})", "", machine, "",
                       f"{len(held)} held-out selections (pursuit, seeds 20000...), memo off, `--dtype auto`.", "",
                       "| idea | as shipped | with it | choices |", "|---|---|---|---|", *rows]) + "\n", args.write)


if __name__ == "__main__":
    main(sys.argv[1:])
