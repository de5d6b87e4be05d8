"""Continuing an adapter on a base a plugin grew: which training data and rate keep what it knew.

    .venv/bin/python benchmarks/bench_continuation.py [--adapter DIR] [--extra-module FILE]
        [--variant focused:3e-3:32[:4] ...] [--emergency-examples] [--write]

The base gains the extras plugin's ``rush_from_three_sides`` (a new pursuer.decide
alternative; ``--extra-module``). Training and held-out selections are built once, as
``ldengine finetune --task pursuit,twentyone`` builds them (``--emergency-examples``: with the
selections under the training emergencies too, as the command does; without, the plain
games only, which is faster). Each variant ``DATA:LR:STEPS`` starts again from the same
adapter and trains: ``focused`` on what ``ldengine finetune --from-adapter`` trains on
(``finetune.continuation``: the selections where a function the adapter never learnt is a
candidate, and as many of the others replayed), ``all`` on every selection. Then,
on the held-out selections: pursuit's accuracy, at the stages where the new function is a
candidate, where it is the right one, how often it is picked where another offered one is
right, and 21 Points'.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402

EXTRA = ROOT / "plugins" / "ldengine-pursuit-extras" / "ldengine_pursuit_extras" / "functions" / "rush.py"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", help="the adapter to continue (default: pursuit's default adapter)")
    parser.add_argument("--extra-module", default=str(EXTRA), help="the function module a plugin adds")
    parser.add_argument("--variant", action="append", default=[],
                        help="DATA:LR:STEPS[:REPLAY_EVERY], DATA focused or all (repeatable; default "
                             "focused:3e-3:32); focused replays one known selection per REPLAY_EVERY new ones [1]")
    parser.add_argument("--emergency-examples", action="store_true",
                        help="also the selections under the training emergencies (as ldengine finetune)")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from ldengine.adapters import find_adapter
    from ldengine.cache import read_json
    from ldengine.finetune import (REPLAY_EVERY, FinetuneConfig, TaskData, accuracy, balanced, build_data,
                                   continuation)
    from ldengine.functionbase import FunctionBase
    from ldengine.models import load_student
    from ldengine.registry import ModuleSource, Registry
    reg = Registry.load()
    extra = Path(args.extra_module)
    reg.modules.append(ModuleSource("pursuit", extra.read_text(encoding="utf-8"), f"extra/{extra.name}", "extra"))
    start = args.adapter or str(find_adapter("pursuit", FunctionBase.build("pursuit", reg.modules_for("pursuit"))))
    manifest = read_json(Path(start) / "manifest.json") or {}
    data = []
    for task in ("pursuit", "twentyone"):
        cfg = FinetuneConfig(task=task, balance_cap=8, emergency_seeds=[0, 1] if args.emergency_examples else [])
        base, _, train, held, _, _ = build_data(reg, cfg, progress=True)
        data.append(TaskData(task, base, None, train, held, [], []))
    new = {n for d in data for n in continuation(data, manifest)[1]["new_functions"][d.task]}
    holds = [e for e in data[0].held if new & {o.split(" ", 1)[0] for o in e.options}]
    right = [e for e in holds if e.answer >= 0 and e.options[e.answer].split(" ", 1)[0] in new]

    def wrongly(student) -> int:
        picks = []
        for i in range(0, len(data[0].held), 16):
            chunk = data[0].held[i:i + 16]
            picks += [(p.index, e) for p, e in
                      zip(student.select_batch([(e.prefix, e.query, list(e.options)) for e in chunk]), chunk)]
        return sum(0 <= e.answer != i and e.options[i].split(" ", 1)[0] in new for i, e in picks)

    def row(label: str, student, seconds: float | None) -> str:
        return (f"| {label} | {accuracy(student, data[0].held):.3f} | {accuracy(student, holds):.3f} | "
                f"{accuracy(student, right):.3f} | {wrongly(student)} | {accuracy(student, data[1].held):.3f} | "
                + (f"{seconds:.0f} s |" if seconds is not None else "- |"))
    rows = [row("the adapter as it is (zero-shot)", load_student(None, adapter=start), None)]
    print(rows[-1], flush=True)
    for spec in args.variant or ["focused:3e-3:32"]:
        how, lr, steps, *every = spec.split(":")
        replay = int(every[0]) if every else REPLAY_EVERY
        train = (continuation(data, manifest, replay_every=replay)[0] if how == "focused"
                 else balanced([d.train for d in data]))
        student = load_student(None, adapter=start)
        began = time.perf_counter()
        student.train_lora([e.as_tuple() for e in train], steps=int(steps), lr=float(lr), batch_size=8, rank=8,
                           seed=0, progress=True, top_layers=6)
        label = f"{how}{f' (1 replayed per {replay} new)' if how == 'focused' else ''}"
        rows.append(row(f"{label}, lr {lr}, {steps} steps ({len(train)} selections)", student,
                        time.perf_counter() - began))
        print(rows[-1], flush=True)
    ceiling = sum(e.retrieved for e in data[0].held) / len(data[0].held)
    text = "\n".join([
        f"### Continuing an adapter on a grown base ({time.strftime('%Y-%m-%d')})", "",
        machine_line("bench_continuation.py", argv), "",
        f"From `{Path(start).name}`, the base grown by `{extra.name}` ({', '.join(sorted(new))} never learnt); "
        f"{'with' if args.emergency_examples else 'without'} the selections under the training emergencies. "
        f"Held-out: {len(data[0].held)} pursuit selections ({len(holds)} with a new function among the candidates, "
        f"{len(right)} where it is the right one; retrieval recall@5 {ceiling:.3f} is the ceiling), "
        f"{len(data[1].held)} of 21 Points.", "",
        "| training | pursuit | where a new function is a candidate | where it is right | picked where wrong "
        "| 21 Points | training time |",
        "|---|---|---|---|---|---|---|", *rows])
    publish(text, args.write)


if __name__ == "__main__":
    main()
