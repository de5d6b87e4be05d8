"""One selection without memos: latency, throughput against batch size, float32 against
bfloat16, and where the time goes.

    .venv/bin/python benchmarks/bench_selection.py [--task pursuit] [--heldout-games 4]
        [--repeats 9] [--dtypes float32,bfloat16] [--batches 1,4,16] [--write]

The selections are the state-dependent ones of held-out expert games (seeds 20000...,
the shared index's top-5, the committed adapter), each scored by the model: the memo
is off. Per dtype: the median latency of one selection (K=5), selections per second
at each batch size (several selections scored together, as games in lockstep do), the
tokens a selection reads beyond the cached prefix, the achieved FLOP rate against the
rate of one plain forward pass of the same length, and whether the choices on the
held-out selections equal float32's (and how many are right).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, median_s, publish  # noqa: E402


def held_out(task_name: str, games: int):
    from ldengine.finetune import FinetuneConfig, build_data
    from ldengine.registry import Registry
    cfg = FinetuneConfig(task=task_name, train_seeds=[], emergency_seeds=[],
                         heldout_seeds=list(range(20_000, 20_000 + games)))
    base, _, _, held, _, _ = build_data(Registry.load(), cfg)
    return base, held


def flops_per_token(model) -> float:
    """2 x the parameters a token passes through (the embedding is a lookup; the
    output head runs for the K answer tokens only, so it is left out)."""
    config = model.config
    total = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    return 2.0 * total if config else 0.0


def measure(dtype: str, adapter, held, repeats: int, batches: list[int]) -> dict:
    import torch

    from ldengine.models import load_student
    student = load_student(adapter=adapter, dtype=None if dtype == "float32" else dtype)
    student.memo_size = 0
    items = [(e.prefix, e.query, list(e.options)) for e in held]
    picks = [s.index for s in student.select_batch(items)]
    tokens_before = student.usage["tokens"]
    student.select_batch(items[:1])
    tokens = student.usage["tokens"] - tokens_before
    out = {"dtype": dtype, "picks": picks, "tokens": tokens, "distinct": len(set(map(str, items))),
           "right": sum(p == e.answer for p, e in zip(picks, held)),
           "latency_s": median_s(lambda: student.select_batch(items[:1]), repeats)}
    out["per_s"] = {}
    distinct = list(dict.fromkeys((p, q, tuple(o)) for p, q, o in items))  # a batch dedupes repeats
    for b in batches:
        chunk = [(p, q, list(o)) for p, q, o in (distinct * (b // len(distinct) + 1))[:b]]
        out["per_s"][b] = b / median_s(lambda: student.select_batch(chunk), max(3, repeats // 3))
    ids = torch.randint(100, 1000, (1, tokens))
    with torch.inference_mode():
        plain = median_s(lambda: student.model(input_ids=ids, logits_to_keep=1), repeats)
        one = median_s(lambda: student.model(input_ids=ids[:, :1], logits_to_keep=1), repeats)
    per_token = flops_per_token(student.model)
    out.update(plain_s=plain, one_token_s=one, gflop=per_token * tokens / 1e9)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="pursuit")
    parser.add_argument("--heldout-games", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    machine = machine_line("bench_selection.py", argv)
    from ldengine.adapters import find_adapter
    from ldengine.models.loading import default_dtype
    base, held = held_out(args.task, args.heldout_games)
    adapter = find_adapter(args.task, base)
    batches = [int(b) for b in args.batches.split(",")]
    rows = [measure(d, adapter, held, args.repeats, batches) for d in args.dtypes.split(",")]
    first = rows[0]
    lines = [f"### One selection, memo off: {args.task} ({time.strftime('%Y-%m-%d')})", "", machine, "",
             f"Adapter `{Path(adapter).name}`; {len(held)} held-out selections from {args.heldout_games} expert "
             f"games (seeds 20000...; {first['distinct']} distinct prompts), K=5, each scored by the model (memo off); medians of {args.repeats}. "
             f"`--dtype auto` picks {default_dtype('cpu')} on this CPU.", "",
             "| dtype | tokens read per selection | latency of one selection | "
             + " | ".join(f"selections/s at batch {b}" for b in batches)
             + " | GFLOP per selection | achieved GFLOP/s | one plain forward of as many tokens | "
               "one 1-token forward (weights read once) | choices equal to " + first["dtype"] + " | right |",
             "|---|---|---|" + "---|" * len(batches) + "---|---|---|---|---|---|"]
    for r in rows:
        same = sum(a == b for a, b in zip(r["picks"], first["picks"]))
        lines.append(f"| {r['dtype']} | {r['tokens']} | {r['latency_s'] * 1e3:.0f} ms | "
                     + " | ".join(f"{r['per_s'][b]:.2f}" for b in batches)
                     + f" | {r['gflop']:.1f} | {r['gflop'] / r['latency_s']:.0f} | {r['plain_s'] * 1e3:.0f} ms"
                     f" | {r['one_token_s'] * 1e3:.0f} ms | {same}/{len(held)} | {r['right']}/{len(held)} |")
        print(lines[-1], flush=True)
    publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main(sys.argv[1:])
