"""KD answers in float32 and bfloat16: time for one batch of held-out KD questions (the
batch one eval round asks: 16 games x 3 pursuers) and how many greedy answers agree.

    .venv/bin/python benchmarks/bench_dtype.py [--questions 48] [--write]

bfloat16 is fast only where the CPU has bfloat16 matrix units (AMX); elsewhere it can
be slower than float32, which is why ``--dtype`` is opt-in.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from ldengine.adapters import find_adapter
    from ldengine.functionbase import FunctionBase
    from ldengine.models import load_student
    from ldengine.registry import Registry
    from ldengine_plugins.pursuit import kd
    reg = Registry.load()
    task = reg.get("tasks", "pursuit").obj
    base = FunctionBase.build("pursuit", reg.modules_for("pursuit"))
    adapter = find_adapter("pursuit", base, method="kd")
    questions = [e.question for e in kd.move_examples(task, base, reg.get("evaders", "greedy").obj,
                                                      [20_000, 20_001, 20_002])][:args.questions]
    answers, lines = {}, []
    for dtype in ("float32", "bfloat16"):
        student = load_student(adapter=adapter, dtype=dtype)
        generate = lambda qs: student.generate_batch(qs, prefix=kd.rules_prefix(task.rules),  # noqa: E731
                                                     max_new_tokens=kd.KD_MAX_NEW_TOKENS, stop=kd.has_cells(1))
        generate(questions[:4])                                   # warm-up
        start = time.perf_counter()
        answers[dtype] = generate(questions)
        lines.append(f"- {dtype}: {time.perf_counter() - start:.2f} s for {len(questions)} KD questions")
    same = sum(a == b for a, b in zip(answers["float32"], answers["bfloat16"]))
    lines.append(f"- greedy answers equal in both: {same}/{len(questions)}")
    publish("\n".join(["### KD answers: float32 and bfloat16", "",
                       machine_line("bench_dtype.py", argv), "", *lines, ""]), args.write)


if __name__ == "__main__":
    main(sys.argv[1:])
