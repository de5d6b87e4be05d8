"""The emergencies table: per rule, the student's writing pass rate and, with the rule in
force, LD's and the unadapted expert's games."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ldengine.agents import AgentContext
from ldengine.cache import write_atomic
from ldengine.emergency.adopt import writing_adapter, writing_form
from ldengine.emergency.read import Reader
from ldengine.emergency.teach import pass_rates
from ldengine.emergency.write import TEMPERATURE
from ldengine.evaluate import EvalConfig, evaluate
from ldengine.functionbase import FunctionBase

if TYPE_CHECKING:
    from ldengine.contracts import EmergencyKind
    from ldengine.registry import Registry


def measure(registry: Registry, task: str, kinds: list[EmergencyKind], seeds: list[int], attempts: int,
            games: int, out: Path, options: dict, log: Callable[[str], None] = print, progress: bool = True,
            seed: int = 0, emergency_seed: int = 0) -> dict:
    """The table over emergencies: per kind, the writing pass rate over ``seeds`` (attempts to
    first pass; with the ``read`` option, the reading pass rate: each reading one attempt) and,
    with the kind in force (its parameters drawn by ``emergency_seed``), LD's and the unadapted
    expert's games from game seed ``seed`` (an eval run per kind under ``out/KIND``, resumable)."""
    context = AgentContext(registry.task(task), FunctionBase.build(task, registry.modules_for(task)),
                           options, registry)
    by_reading = bool(options.get("read"))
    reader = Reader.load(context) if by_reading else None
    adapter = None if by_reading else writing_adapter(context)
    writer = reader.student if reader else context.load_student(adapter=adapter)
    rows = {}
    for kind in kinds:
        rates = pass_rates(registry, task, writer, [kind], seeds, attempts, progress, writing_form(adapter),
                           reader=reader)[kind.name]
        log(f"{kind.name}: functions {'read' if by_reading else 'written'} passed for "
            f"{rates['passed']}/{rates['seeds']} seeds")
        cfg = EvalConfig(task, ["ld", "expert"], games, seed, None, str(out / kind.name), resume=True,
                         figures=False, progress=progress, options=options, emergency=kind.name,
                         emergency_seed=emergency_seed,
                         command=f"ldengine emergencies measure --task {task} (kind {kind.name})")
        results = evaluate(registry, cfg, log)["agents"]
        rows[kind.name] = {"split": kind.split, "writing": rates, "ld": _short(results.get("ld", {})),
                           "expert": _short(results.get("expert", {}))}
    report = {"task": task, "attempts": attempts, "temperature": TEMPERATURE, "seeds": seeds, "games": games,
              "seed": seed, "emergency_seed": emergency_seed, "read": by_reading,
              "writer_adapter": Path(adapter).name if adapter else None,
              "writer_adapter_hash": getattr(writer, "adapter_hash", None), "kinds": rows}
    write_atomic(out / "results.json", (json.dumps(report, indent=2) + "\n").encode())
    write_atomic(out / "table.md", measure_table(report).encode())
    return report


def _short(summary: dict) -> dict:
    keys = ("games", "success", "success_ci95", "failure_with_violation", "failure_without_violation",
            "avg_steps_success", "violations", "emergency_function", "not_run")
    return {k: summary[k] for k in keys if k in summary}


def measure_table(report: dict) -> str:
    read = report.get("read")
    head = ["Emergency", "Held out of training",
            f"Functions {'read' if read else 'written'}: passing within {report['attempts']} "
            f"{'readings' if read else 'attempts'}",
            "Mean attempts to first pass", "LD success", "LD failure with violation",
            "Expert (not adapted) success", "Expert failure with violation"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in report["kinds"].items():
        w, ld, ex = row["writing"], row["ld"], row["expert"]
        lines.append("| " + " | ".join([
            name, "yes" if row["split"] == "eval" else "no",
            f"{w['passed']}/{w['seeds']} ({100 * w['pass_rate']:.0f}%)",
            "-" if w["mean_attempts_to_pass"] is None else f"{w['mean_attempts_to_pass']:.2f}",
            _rate(ld, "success"), _rate(ld, "failure_with_violation"),
            _rate(ex, "success"), _rate(ex, "failure_with_violation")]) + " |")
    how = ("the rule's words read into the rule language, each reading (best first) one attempt, compiled by "
           "the engine" if read else f"attempt 1 greedy, then sampled at temperature {report.get('temperature', 0.8)}")
    first = report.get("seed", 0)
    lines += ["", f"{report['task']}: {'reading' if read else 'writing'} measured over parameter seeds "
              f"{report['seeds'][0]}-{report['seeds'][-1]} (each draws the rule, the cases and the sampling; {how}); "
              f"games: {report['games']} per agent, seeds {first}-{first + report['games'] - 1}, emergency seed "
              f"{report.get('emergency_seed', 0)}."]
    return "\n".join(lines) + "\n"


def _rate(summary: dict, key: str) -> str:
    if "not_run" in summary:
        return "not run"
    if key not in summary:
        return "-"
    return f"{100 * summary[key]:.1f}%"
