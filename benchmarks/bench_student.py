"""Student benchmarks: load time (GGUF conversion and cached), selection latency
with and without the prefix key/value cache, batched selection, generation,
LoRA training speed, and peak memory.

    .venv/bin/python benchmarks/bench_student.py [--prefix-tokens 400] [--suffix-tokens 120]
        [--k 5] [--batch 8] [--repeats 7] [--gen-tokens 64] [--train-steps 3]
        [--dtypes float32,bfloat16] [--write]

The first load converts the GGUF into a fresh temporary cache (as a first run
does); every later figure uses the model loaded from that cache.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, median_s, publish  # noqa: E402
from ldengine.models import load_student  # noqa: E402

RULES = ("The board has cells (x, y) with 0 <= x, y <= 20. Three pursuers chase one evader. "
         "Each step every pursuer may move to a cell within Manhattan distance 2 of its cell; "
         "no pursuer may stand on the evader's cell; a proposal off the board or on a forbidden "
         "cell is a violation and the pursuer stays. The game is won when every pursuer is within "
         "distance 1 of the evader. ")
OPTION = ("{name}(state): {what} Stage: {stage}. Reads: pursuers, evader, size. "
          "Returns: a list of [x, y] cells.")
STAGES = ["observe", "generate", "filter", "score", "choose", "verify", "plan", "report", "move"]


def fit(student, text: str, tokens: int) -> str:
    """``text`` repeated and cut to exactly ``tokens`` tokens."""
    ids = student.tokenizer(text * (tokens // 20 + 1), add_special_tokens=False)["input_ids"]
    return student.tokenizer.decode(ids[:tokens])


def items(student, args) -> list[tuple[str, str, list[str]]]:
    """``args.batch`` selections sharing one prefix, suffixes of about ``args.suffix_tokens``."""
    prefix = fit(student, RULES, args.prefix_tokens) + "\n"
    out = []
    for i in range(args.batch):
        options = [OPTION.format(name=f"{STAGES[(i + j) % 9]}_cells", what="Computes cells.",
                                 stage=STAGES[(i + j) % 9]) for j in range(args.k)]
        query = f"Stage: {STAGES[i % 9]}. State: pursuers at (1, {i}), (4, 4), (9, 2); evader at (10, 10)."
        budget = args.suffix_tokens - len(student.tokenizer(student.selection_prompt("", query, options),
                                                            add_special_tokens=False)["input_ids"])
        query += " " + fit(student, "Pick the function for this stage. ", max(budget, 0))
        out.append((prefix, query, options))
    return out


def bench_loads(dtype: str) -> tuple[dict, str]:
    cache = tempfile.mkdtemp(prefix="ldengine-bench-")
    start = time.perf_counter()
    load_student(cache_dir=cache, dtype=dtype)
    first = time.perf_counter() - start
    start = time.perf_counter()
    load_student(cache_dir=cache, dtype=dtype)
    return {"first_load_s": first, "cached_load_s": time.perf_counter() - start}, cache


def bench_dtype(dtype: str, cache: str, args, reference: list | None) -> dict:
    student = load_student(cache_dir=cache, dtype=dtype)
    student.memo_size = 0  # time the model, not the memo
    batch = items(student, args)
    one = batch[0]
    row = {"dtype": dtype, "prefix_tokens": len(student.tokenizer(one[0])["input_ids"]),
           "suffix_tokens": len(student.tokenizer(student.selection_prompt("", *one[1:]),
                                                  add_special_tokens=False)["input_ids"])}
    student.use_prefix_cache = False
    row["select_nocache_s"] = median_s(lambda: student.select(*one), args.repeats)
    row["batch_nocache_s"] = median_s(lambda: student.select_batch(batch), max(1, args.repeats // 3))
    student.use_prefix_cache = True
    row["select_cache_s"] = median_s(lambda: student.select(*one), args.repeats)
    row["batch_cache_s"] = median_s(lambda: student.select_batch(batch), args.repeats)
    probs = [s.probabilities for s in student.select_batch(batch)]
    row["max_dp_vs_float32"] = (max(abs(a - b) for p, q in zip(probs, reference) for a, b in zip(p, q))
                                if reference else 0.0)
    row["generate_s"] = median_s(lambda: student.generate("Write a Python function that returns the "
                                                          "Manhattan distance of two cells.",
                                                          max_new_tokens=args.gen_tokens), 2)
    row["train_step_s"] = train_step_s(student, batch, args.train_steps)
    return row, probs


def train_step_s(student, batch, steps: int) -> float:
    """Seconds per LoRA step at batch ``len(batch)`` on the benchmark's own items."""
    if steps <= 0:
        return float("nan")
    examples = [(p, q, o, 0) for p, q, o in batch]
    report = student.train_lora(examples, steps=steps, batch_size=len(batch), progress=False)
    return report["seconds"] / steps


def report(loads: dict, rows: list[dict], args, peak_mb: float) -> str:
    lines = [f"### Student: SmolLM2-135M-Instruct ({time.strftime('%Y-%m-%d')})", "",
             f"{machine_line('bench_student.py', sys.argv[1:])} torch threads {_threads()}.", "",
             f"- load, first run (GGUF dequantised and converted, then cached): {loads['first_load_s']:.1f} s",
             f"- load from the converted cache: {loads['cached_load_s']:.1f} s",
             f"- peak resident memory of the benchmark process: {peak_mb:.0f} MB", "",
             f"K = {args.k} options; batch of {args.batch} sharing one prefix; medians of {args.repeats}.", "",
             "| dtype | prefix/suffix tokens | select, no cache | select, prefix cache | speed-up "
             f"| batch {args.batch}, no cache | batch {args.batch}, cache | per item | max Δp vs float32 "
             f"| generate {args.gen_tokens} tokens | LoRA step (batch {args.batch}) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['prefix_tokens']}/{r['suffix_tokens']} | {r['select_nocache_s'] * 1e3:.0f} ms "
            f"| {r['select_cache_s'] * 1e3:.0f} ms | {r['select_nocache_s'] / r['select_cache_s']:.1f}x "
            f"| {r['batch_nocache_s']:.2f} s | {r['batch_cache_s']:.2f} s "
            f"| {r['batch_cache_s'] / args.batch * 1e3:.0f} ms | {r['max_dp_vs_float32']:.1e} "
            f"| {r['generate_s']:.2f} s | {r['train_step_s']:.2f} s |")
    return "\n".join(lines) + "\n"


def _threads() -> int:
    import torch
    return torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix-tokens", type=int, default=400)
    parser.add_argument("--suffix-tokens", type=int, default=120)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--dtypes", default="float32", help="comma-separated, float32 first")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args()
    dtypes = args.dtypes.split(",")
    loads, cache = bench_loads(dtypes[0])
    rows, reference = [], None
    for dtype in dtypes:
        row, probs = bench_dtype(dtype, cache, args, reference)
        reference = reference or probs
        rows.append(row)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = report(loads, rows, args, peak)
    publish(text, args.write)


if __name__ == "__main__":
    main()
