"""One selection, memo off: bfloat16, float32, and float32 with the LoRA merged and the linear
layers quantised to int8 on the fly (``torch.ao.quantization.quantize_dynamic``).

    .venv/bin/python benchmarks/bench_int8.py [--heldout-games 2] [--modes bf16,int8,f32]

The selections are the state-dependent ones of held-out expert games (seeds 20000...), each
scored by the committed adapter with the memo off; the figure is the median of 9 single
selections (cycling over the held-out ones, the candidates' rows cached), and "right" counts
the held-out selections whose pick is the oracle's. int8 is a measurement only: the engine
does not offer it (it changed a choice, below).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_selection import held_out  # noqa: E402


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heldout-games", type=int, default=2)
    parser.add_argument("--modes", default="bf16,int8,f32")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    from ldengine.adapters import find_adapter
    from ldengine.models import load_student
    base, held = held_out("pursuit", args.heldout_games)
    adapter = find_adapter("pursuit", base)
    items = [(e.prefix, e.query, list(e.options)) for e in held]
    for mode in args.modes.split(","):
        student = load_student(adapter=adapter, dtype="bfloat16" if mode == "bf16" else None)
        if mode == "int8":
            student.model = torch.ao.quantization.quantize_dynamic(student.model.merge_and_unload(),
                                                                   {torch.nn.Linear}, dtype=torch.qint8)
            student._weights_version += 1
        student.memo_size = 0
        picks = [s.index for s in student.select_batch(items)]
        times = []
        for i in range(9):
            start = time.perf_counter()
            student.select_batch(items[i % len(items):i % len(items) + 1])
            times.append(time.perf_counter() - start)
        right = sum(p == e.answer for p, e in zip(picks, held))
        print(f"{mode}: median {statistics.median(times) * 1000:.0f} ms, right {right}/{len(held)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
