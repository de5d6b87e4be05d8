"""One index over every task's functions, and one adapter or one per task.

    .venv/bin/python benchmarks/bench_library.py [--heldout-games 10] [--emergency-seeds 0 1]
        [--retrieval-only] [--write]

Retrieval, per task, on the held-out expert games ``ldengine finetune`` evaluates on
(seeds 20000...): recall@1 and @5 of each stage's function with the task's own index
and with the shared one, and the share of the shared index's top-5 that is another
task's. Selection: every committed selection adapter that covers the task (its own
and the one trained on both manuals), held-out accuracy with the shared index's
candidates, in retrieval order and shuffled, and (pursuit) at the new stage of the
held-out emergency kinds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402


def adapters_for(task: str, base) -> list[Path]:
    """Committed selection adapters trained on this base: the task's own, then shared ones."""
    from ldengine.adapters import adapter_method, adapter_roots, trained_on
    out = []
    for root in adapter_roots(task):
        for manifest in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            if trained_on(data, task, base) and adapter_method(data) == "ld":
                out.append(manifest.parent)
    return out


def retrieval_rows(reg, task, base, encoder, pairs) -> tuple[list[str], object]:
    from ldengine.ld import RetrieverProvider
    from ldengine.retriever import Retriever, recall_at_k
    rows, library = [], None
    for label, retriever in (("own index", Retriever.for_base(base, encoder)),
                             ("shared index", Retriever.for_library(base, reg, encoder))):
        provider = RetrieverProvider(task, base, retriever, 5)
        examples = [(provider.query(stage, state), base.oracle(stage, state).name) for stage, state in pairs]
        recall = recall_at_k(retriever, examples, ks=(1, 5))
        hits = retriever.search_batch([q for q, _ in examples], 5)
        foreign = sum(":" in name for row in hits for name, _ in row) / max(1, sum(len(r) for r in hits))
        ranked = retriever.search_batch([q for q, _ in examples], len(retriever))
        first = min((next((i + 1 for i, (n, _) in enumerate(row) if ":" in n), None) for row in ranked),
                    key=lambda r: r or 10**9)
        rows.append(f"| {task.name} | {label} | {len(retriever)} | {len(examples)} | {recall[1]:.3f} | "
                    f"{recall[5]:.3f} | {100 * foreign:.1f}% | {first or '-'} |")
        library = retriever
    return rows, library


def selection_rows(reg, task, base, library, pairs, emergency_seeds) -> list[str]:
    from ldengine.emergency.rule import kinds_of
    from ldengine.emergency.teach import emergency_selection_examples
    from ldengine.finetune import accuracy, shuffled
    from ldengine.ld import RetrieverProvider, selection_examples
    from ldengine.models import load_student
    held = selection_examples(task, base, RetrieverProvider(task, base, library, 5), pairs)
    mixed = shuffled(held, 8, 0)
    new_stage = []
    if emergency_seeds and hasattr(task, "with_emergency"):
        examples = emergency_selection_examples(reg, task, kinds_of(reg, task.name, "eval"), emergency_seeds,
                                                reg.get("evaders", "greedy").obj, 5, 4,
                                                encoder=library.encoder)
        new_stage = [e for e in examples if e.stage.endswith(".emergency")]
    rows = []
    for adapter in adapters_for(task.name, base):
        student = load_student(adapter=adapter)
        figures = [accuracy(student, held), accuracy(student, mixed)]
        rows.append(f"| {task.name} | {adapter.name} | {figures[0]:.3f} ({len(held)}) | "
                    f"{figures[1]:.3f} ({len(mixed)}) | "
                    + (f"{accuracy(student, new_stage):.3f} ({len(new_stage)}) |" if new_stage else "- |"))
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heldout-games", type=int, default=10)
    parser.add_argument("--emergency-seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--retrieval-only", action="store_true", help="skip the adapters' selection accuracy")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from ldengine.functionbase import FunctionBase
    from ldengine.ld import stage_inputs
    from ldengine.registry import Registry
    from ldengine.retriever import Encoder
    reg, encoder = Registry.load(), Encoder()
    retrieval, selection = [], []
    for name in sorted(reg.tasks):
        task = reg.get("tasks", name).obj
        base = FunctionBase.build(name, reg.modules_for(name))
        pairs = stage_inputs(task, base, reg.get("evaders", "greedy").obj,
                             list(range(20_000, 20_000 + args.heldout_games)))
        rows, library = retrieval_rows(reg, task, base, encoder, pairs)
        retrieval += rows
        if not args.retrieval_only:
            selection += selection_rows(reg, task, base, library, pairs, args.emergency_seeds)
    publish("\n".join([
        "### One index over both tasks; one adapter or one per task", "",
        machine_line("bench_library.py", argv), "",
        "| task | index | functions | stage queries | recall@1 | recall@5 | top-5 from another task "
        "| best rank of another task's function |",
        "|---|---|---|---|---|---|---|---|", *retrieval, "",
        *([] if args.retrieval_only else [
            "Held-out selection accuracy with the shared index's top-5 (examples in brackets):", "",
            "| task | adapter | retrieval order | shuffled | new stage of held-out emergencies |",
            "|---|---|---|---|---|", *selection, ""])]), args.write)


if __name__ == "__main__":
    main(sys.argv[1:])
