"""The GPU path: selections per second against batch size, and `ld` games in lockstep
with the memo off, on one CUDA GPU.

    .venv/bin/python benchmarks/bench_gpu.py [--games 1000] [--batches 1,16,64,256]
        [--game-batch 256] [--write]

Without a CUDA GPU it measures nothing and says so (with --write, in RESULTS.md), so
the section records why the GPU figures are missing. The selections are the
held-out ones of bench_selection.py (distinct prompts, K=5, committed adapter,
bfloat16); the games are `ldengine run pursuit --agent ld --games N --batch B
--no-memo --device cuda --dtype bfloat16`, timed end to end in this process.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_selection import held_out  # noqa: E402
from benchmarks.common import machine_line, median_s, publish  # noqa: E402


def gpu_name() -> str | None:
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def selections_per_second(adapter, held, batches: list[int]) -> dict:
    import torch

    from ldengine.models import load_student
    student = load_student(adapter=adapter, device="cuda", dtype="bfloat16")
    student.memo_size = 0
    student.batch_size = max(batches)
    distinct = list(dict.fromkeys((e.prefix, e.query, tuple(e.options)) for e in held))
    out = {}
    for b in batches:
        chunk = [(p, q, list(o)) for p, q, o in (distinct * (b // len(distinct) + 1))[:b]]

        def run():
            student.select_batch(chunk)
            torch.cuda.synchronize()
        out[b] = b / median_s(run, 5)
        print(f"batch {b}: {out[b]:.0f} selections/s", flush=True)
    return out


def lockstep_games(games: int, batch: int) -> dict:
    from ldengine.registry import Registry
    from ldengine.runner import RunConfig, run_games
    options = {"device": "cuda", "dtype": "bfloat16", "no_memo": True, "log": lambda line: None}
    cfg = RunConfig("pursuit", "ld", games, 0, "greedy", progress=True, options=options, batch=batch)
    start = time.perf_counter()
    summary = run_games(Registry.load(), cfg).summary
    summary["wall_total_s"] = time.perf_counter() - start
    return summary


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=1000)
    parser.add_argument("--batches", default="1,16,64,256")
    parser.add_argument("--game-batch", type=int, default=256)
    parser.add_argument("--heldout-games", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    machine, gpu = machine_line("bench_gpu.py", argv), gpu_name()
    title = f"### GPU path ({time.strftime('%Y-%m-%d')})"
    if gpu is None:
        publish("\n".join([title, "", machine, "",
                           "No CUDA GPU on this machine (torch.cuda.is_available() is False): nothing "
                           "measured. The script runs as is where one is lent.", ""]), args.write)
        return
    from ldengine.adapters import find_adapter
    base, held = held_out("pursuit", args.heldout_games)
    batches = [int(b) for b in args.batches.split(",")]
    rates = selections_per_second(find_adapter("pursuit", base), held, batches)
    s = lockstep_games(args.games, args.game_batch)
    steps = "-" if s.get("avg_steps_success") is None else f"{s['avg_steps_success']:.2f}"
    publish("\n".join([
        title, "", machine, f"GPU: {gpu}, bfloat16.", "",
        "| batch (selections scored together) | " + " | ".join(str(b) for b in batches) + " |",
        "|---|" + "---|" * len(batches),
        "| selections per second | " + " | ".join(f"{rates[b]:.0f}" for b in batches) + " |", "",
        f"`ld` on {s['games']} pursuit games, {args.game_batch} in lockstep, memo off: "
        f"{s['wall_total_s']:.1f} s in all (load included), success {s['success']:.3f}, violations "
        f"{s['violations']}, average steps {steps}, {s.get('model_calls', '-')} model calls.", ""]), args.write)


if __name__ == "__main__":
    main(sys.argv[1:])
