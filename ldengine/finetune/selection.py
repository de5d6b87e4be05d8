"""``ldengine finetune`` (``--method ld``): teach the student the manual by LoRA on selection examples.

Training data: every stage the expert meets on seeded training games
(its input state -> query -> the retriever's top-K, the oracle's index), with
candidate order shuffled; evaluation: the same on held-out seeds, in the
retriever's own order, exactly as the ``ld`` agent will see it. The adapter is
saved with a manifest that pins the base model file, the function base and the
data, and records held-out accuracy and retrieval recall.
"""
from __future__ import annotations

import hashlib
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ldengine.adapters import default_adapter_dir, shared_adapter_dir
from ldengine.cache import read_json
from ldengine.contracts import task_evader
from ldengine.emergency.rule import kinds_of
from ldengine.emergency.teach import emergency_selection_examples
from ldengine.finetune.config import (_version_name, accuracy, data_hash, FinetuneConfig, shuffled, trained_facts,
                                      trained_functions)
from ldengine.functionbase import FunctionBase
from ldengine.ld import RetrieverProvider, selection_examples, SelectionExample, stage_inputs
from ldengine.models import load_student
from ldengine.reading import reading_examples
from ldengine.registry import Registry
from ldengine.retriever import Retriever
from ldengine.version import __version__

if TYPE_CHECKING:
    from ldengine.contracts import Student


def weighted(examples: list[SelectionExample], base: FunctionBase, times: int, cap: int = 1) -> list[SelectionExample]:
    """Each example at a stage with several functions ``times`` times, the others once; at
    such a stage, an example whose right function is rarer than the stage's commonest is
    repeated more, up to ``cap`` times as often, so that a state met seldom (a piece
    blocked by a wall) is not drowned by a common one (an evader near an edge)."""
    counts: dict = {}
    for e in examples:
        if len(base.for_stage(e.stage)) > 1 and e.answer is not None:
            key = (e.stage, e.options[e.answer])
            counts[key] = counts.get(key, 0) + 1
    most: dict = {}
    for (stage, _), n in counts.items():
        most[stage] = max(most.get(stage, 0), n)
    out = []
    for e in examples:
        if len(base.for_stage(e.stage)) <= 1:
            out.append(e)
            continue
        rarer = 1 if e.answer is None else most[e.stage] / counts[(e.stage, e.options[e.answer])]
        out += [e] * (times * max(1, min(cap, round(rarer))))
    return out


# A continued adapter replays one example it already knows for this many new ones: at 4, 32 steps
# learnt the extras plugin's alternative but 21 Points fell from 0.989 to 0.789; at 1 it stayed.
REPLAY_EVERY = 1


def new_functions(base: FunctionBase, manifest: dict, task: str) -> list[str]:
    """The functions of ``base`` that the adapter of ``manifest`` never learnt, or learnt
    with other code (all of them when it was not trained on ``task``)."""
    known = (manifest.get("trained_functions") or {}).get(task) or {}
    return sorted(n for n, digest in trained_functions(base).items() if known.get(n) != digest)


def continuation(data: list, manifest: dict, seed: int = 0, replay_every: int = REPLAY_EVERY) -> tuple[list, dict]:
    """Training examples for an adapter continued on a grown base: every example where a
    function it never learnt is among the candidates, and a sample of the others
    (one for each ``replay_every`` new ones, the tasks balanced) so that what it knows stays.

    Trained on all examples instead, the few that hold the new function were a small share
    of the 16 steps' 128 draws: the extras plugin's continuation took its task's held-out
    selection from 0.937 to 0.861 and 21 Points' from 0.989 to 0.800 (benchmarks/RESULTS.md,
    "Continuing an adapter")."""
    fresh, old, new = [], [], {}
    for d in data:
        new[d.task] = new_functions(d.base, manifest, d.task)
        names = set(new[d.task])
        holds = [bool(names & {o.split(" ", 1)[0] for o in e.options}) for e in d.train]
        fresh += [e for e, new_one in zip(d.train, holds) if new_one]
        old.append([e for e, new_one in zip(d.train, holds) if not new_one])
    if not fresh:
        return balanced([d.train for d in data]), {"new_functions": new, "new_examples": 0, "replayed": None}
    pool = balanced(old)
    replay = random.Random(seed).sample(pool, min(len(pool), max(1, len(fresh) // replay_every)))
    return fresh + replay, {"new_functions": new, "new_examples": len(fresh), "replayed": len(replay)}


def build_data(registry: Registry, cfg: FinetuneConfig, retriever: Retriever | None = None,
               progress: bool = False):
    """Training and held-out selection examples, plus the retriever used. With the
    task's training emergency kinds in force, more training examples (the new stage
    in the pipeline, its reference function in the base); the evaluated kinds give
    held-out ones (``emergency_held``: never trained on)."""
    task = registry.task(cfg.task)
    base = FunctionBase.build(cfg.task, registry.modules_for(cfg.task))
    retriever = retriever or Retriever.for_library(base, registry)
    provider = RetrieverProvider(task, base, retriever, cfg.k)
    evader = registry.policy(task_evader(task))        # the task's own evader (None without one)
    bar = f"{cfg.task}: " if progress else ""
    train_pairs = stage_inputs(task, base, evader, cfg.train_seeds, bar and bar + "training games")
    held_pairs = stage_inputs(task, base, evader, cfg.heldout_seeds, bar and bar + "held-out games")
    train = selection_examples(task, base, provider, train_pairs, shuffle_seed=cfg.seed,
                               desc=bar and bar + "training selections")
    held = selection_examples(task, base, provider, held_pairs, desc=bar and bar + "held-out selections")
    reading = reading_examples(task, base, provider, train_pairs, cfg.reading, cfg.seed) if cfg.reading else []
    reading_held = (reading_examples(task, base, provider, held_pairs, cfg.reading_heldout, cfg.seed + 1, "eval",
                                     heldout_phrasing=True, heldout_names=True) if cfg.reading else [])
    emergency_held = []
    if cfg.emergency_seeds and task.with_emergency is not None:
        encoder = getattr(retriever, "encoder", None)
        train += emergency_selection_examples(registry, task, kinds_of(registry, cfg.task, "train"),
                                              cfg.emergency_seeds, evader, cfg.k, cfg.emergency_steps,
                                              cfg.seed + 1, encoder, desc=bar and bar + "emergency training games")
        emergency_held = emergency_selection_examples(registry, task, kinds_of(registry, cfg.task, "eval"),
                                                      cfg.emergency_seeds, evader, cfg.k, cfg.emergency_steps,
                                                      encoder=encoder, desc=bar and bar + "emergency held-out games")
    train = weighted(train, base, cfg.alternatives_weight, cfg.balance_cap) + reading
    return base, retriever, train, held, emergency_held, reading_held


@dataclass
class TaskData:
    """One task's selection examples, and what they were drawn with."""
    task: str
    base: FunctionBase
    retriever: Retriever
    train: list
    held: list
    emergency_held: list
    mixed: list
    reading_held: list = field(default_factory=list)


def task_data(registry: Registry, cfg: FinetuneConfig, task: str, log=print, progress: bool = True) -> TaskData:
    base, retriever, train, held, emergency_held, reading_held = build_data(registry, replace(cfg, task=task),
                                                                           progress=progress)
    log(f"{task}: {len(train)} training and {len(held)} held-out selections "
        f"(retrieval recall@{cfg.k} on held-out: {_recall(held):.3f})"
        + (f"; {len(emergency_held)} held-out selections under the evaluated emergencies" if emergency_held else "")
        + (f"; {len(reading_held)} held-out reading selections" if reading_held else ""))
    return TaskData(task, base, retriever, train, held, emergency_held, shuffled(held, cfg.shuffles, cfg.seed),
                    reading_held)


def finetune(registry: Registry, cfg: FinetuneConfig, progress: bool = True, log=print) -> dict:
    """Trains, evaluates and saves an adapter; returns its manifest. With several tasks
    (``cfg.tasks``) one adapter learns every task's manual, each task's held-out
    accuracy measured on its own."""
    start = time.perf_counter()
    data = [task_data(registry, cfg, task, log, progress) for task in cfg.tasks]
    student = load_student(cfg.student, adapter=cfg.start_adapter, device=cfg.device)
    before = {d.task: _accuracies(student, d.held, d.mixed, d.emergency_held) for d in data}
    reading_before = {d.task: accuracy(student, d.reading_held, desc="held-out reading") for d in data if d.reading_held}
    for d in data:
        log(f"{d.task}: held-out selection accuracy before training: " + _accuracy_words(before[d.task], d))
    train, continued = balanced([d.train for d in data]), None
    if cfg.start_adapter:
        train, continued = continuation(data, read_json(Path(cfg.start_adapter) / "manifest.json") or {}, cfg.seed)
        log(_continuation_words(cfg, continued))
    metrics = student.train_lora([e.as_tuple() for e in train], steps=cfg.steps, lr=cfg.lr,
                                 batch_size=cfg.batch_size, rank=cfg.rank, seed=cfg.seed,
                                 progress=progress, top_layers=cfg.top_layers, modules=list(cfg.lora_modules))
    log(f"training: {cfg.steps} steps of {cfg.batch_size} in {metrics['seconds']:.0f} s "
        f"({metrics['examples_per_second']} examples/s), loss {metrics['first_loss']:.3f} -> "
        f"{metrics['final_loss']:.3f}")
    after = {d.task: _accuracies(student, d.held, d.mixed, d.emergency_held) for d in data}
    reading_after = {d.task: accuracy(student, d.reading_held, desc="held-out reading") for d in data if d.reading_held}
    for d in data:
        log(f"{d.task}: held-out selection accuracy after {cfg.steps} steps: " + _accuracy_words(after[d.task], d))
        if d.task in reading_after:
            log(f"{d.task}: held-out reading (unseen fact families, phrasings and names) "
                f"{reading_before[d.task]:.3f} -> {reading_after[d.task]:.3f} ({len(d.reading_held)})")
    seconds = time.perf_counter() - start
    if len(data) == 1:
        d = data[0]
        manifest = _manifest(cfg, student, d.base, d.retriever, train, d.held, len(d.mixed),
                             before[d.task], after[d.task], metrics, seconds)
        manifest.update(_emergency_manifest(registry, replace(cfg, task=d.task), d.train, d.emergency_held,
                                            before[d.task], after[d.task]))
        out = Path(cfg.out) if cfg.out else default_adapter_dir(d.task) / _version_name(student, d.base, cfg)
    else:
        manifest = _joint_manifest(registry, cfg, student, data, train, before, after, metrics, seconds)
        out = Path(cfg.out) if cfg.out else shared_adapter_dir() / (
            f"{student.name}-{'+'.join(cfg.tasks)}-lib{manifest['library_hash'][:8]}-s{cfg.steps}")
    if continued is not None:
        manifest["continuation"] = continued
    if reading_after:
        manifest["reading"] = {"train_examples": cfg.reading, "heldout_examples": cfg.reading_heldout,
                               "heldout_accuracy_before": {t: round(v, 4) for t, v in reading_before.items()},
                               "heldout_accuracy": {t: round(v, 4) for t, v in reading_after.items()}}
    student.save_adapter(out, manifest)
    manifest["path"] = str(out)
    return manifest


def _continuation_words(cfg: FinetuneConfig, continued: dict) -> str:
    names = sorted({n for names in continued["new_functions"].values() for n in names})
    head = f"continuing {Path(cfg.start_adapter or '').name} at lr {cfg.lr:g}: "
    if not continued["new_examples"]:
        return head + "no function it did not learn is a candidate anywhere; training on every example"
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return (head + f"{len(names)} function{'s' * (len(names) != 1)} it never learnt ({shown}): training on the "
            f"{continued['new_examples']} selections where one is a candidate, and {continued['replayed']} of "
            "the others replayed")


def balanced(groups: list[list]) -> list:
    """The groups together, a smaller one repeated (whole times) to about the largest's size,
    so that one task's many examples do not drown another's few."""
    most = max((len(g) for g in groups), default=0)
    return [e for g in groups if g for e in g * max(1, round(most / len(g)))]


def _accuracy_words(accuracies: tuple, d: TaskData) -> str:
    return (f"{accuracies[0]:.3f} in retrieval order, {accuracies[1]:.3f} with shuffled candidates "
            f"({len(d.mixed)})" + _emergency_words(accuracies, d.emergency_held))


def _joint_manifest(registry, cfg, student, data, train, before, after, metrics, seconds) -> dict:
    """One adapter for several tasks: pooled held-out figures, then each task's own."""
    n_held, n_mixed = sum(len(d.held) for d in data), sum(len(d.mixed) for d in data)
    pooled = lambda acc, i, n: sum(acc[d.task][i] * (len(d.held) if i == 0 else len(d.mixed))  # noqa: E731
                                   for d in data) / n if n else 0.0
    library = hashlib.sha256("".join(f"{d.task}:{d.base.hash}\n" for d in sorted(data, key=lambda d: d.task))
                             .encode()).hexdigest()
    per_task = {}
    for d in data:
        one = _manifest(replace(cfg, task=d.task), student, d.base, d.retriever, d.train, d.held, len(d.mixed),
                        before[d.task], after[d.task], {}, 0.0)
        one.update(_emergency_manifest(registry, replace(cfg, task=d.task), d.train, d.emergency_held,
                                       before[d.task], after[d.task]))
        per_task[d.task] = {k: v for k, v in one.items() if k.startswith(("heldout", "retrieval", "emergency",
                                                                          "function_base", "train_examples"))}
    manifest = _manifest(cfg, student, data[0].base, data[0].retriever, train, [e for d in data for e in d.held], n_mixed,
                         (pooled(before, 0, n_held), pooled(before, 1, n_mixed)),
                         (pooled(after, 0, n_held), pooled(after, 1, n_mixed)), metrics, seconds)
    del manifest["function_base_hash"]
    most = max(len(d.train) for d in data)
    manifest.update({"tasks": cfg.tasks, "library_hash": library,
                     "train_repeats": {d.task: max(1, round(most / len(d.train))) for d in data if d.train},
                     "function_base_hashes": {d.task: d.base.hash for d in data}, "per_task": per_task,
                     "trained_functions": {d.task: trained_functions(d.base) for d in data},
                     "trained_facts": {d.task: trained_facts(d.base) for d in data}})
    return manifest


def _emergency_words(accuracies: tuple, emergency_held: list) -> str:
    if not emergency_held:
        return ""
    return f"; under emergencies {accuracies[2]:.3f}, at their new stage {accuracies[3]:.3f}"


def _accuracies(student: Student, held: list, mixed: list, emergency_held: list) -> tuple:
    """Held-out accuracy: retrieval order, shuffled, under emergencies, at the emergency stage."""
    new_stage = [e for e in emergency_held if e.stage.endswith(".emergency")]
    return (accuracy(student, held, desc="held-out"), accuracy(student, mixed, desc="held-out, shuffled"),
            accuracy(student, emergency_held, desc="under emergencies"),
            accuracy(student, new_stage, desc="new stage"))


def _emergency_manifest(registry: Registry, cfg: FinetuneConfig, train: list, emergency_held: list,
                        before: tuple, after: tuple) -> dict:
    if not emergency_held:
        return {}
    return {"emergency_train_kinds": [k.name for k in kinds_of(registry, cfg.task, "train")],
            "emergency_held_out_kinds": [k.name for k in kinds_of(registry, cfg.task, "eval")],
            "emergency_train_examples": sum(e.prefix != train[0].prefix for e in train),
            "heldout_emergency_examples": len(emergency_held),
            "heldout_emergency_accuracy_before": round(before[2], 4),
            "heldout_emergency_accuracy": round(after[2], 4),
            "heldout_emergency_stage_accuracy_before": round(before[3], 4),
            "heldout_emergency_stage_accuracy": round(after[3], 4)}


def _recall(examples: list[SelectionExample]) -> float:
    return sum(e.retrieved for e in examples) / len(examples) if examples else 0.0


def _manifest(cfg, student, base, retriever, train, held, n_mixed, before, after, metrics, seconds) -> dict:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "engine_version": __version__, "task": cfg.task, "method": "ld-selection", "promoted": cfg.promote,
        "base_model": student.name, "base_model_sha256": student.model_hash,
        "function_base_hash": base.hash, "retriever_index_hash": retriever.index_hash,
        "trained_functions": {cfg.task: trained_functions(base)},
        "trained_facts": {cfg.task: trained_facts(base)},
        "continued_from": cfg.start_adapter and Path(cfg.start_adapter).name,
        "data_sha256": data_hash(train), "train_examples": len(train), "heldout_examples": len(held),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("train_seeds", "heldout_seeds")},
        "train_seeds": [cfg.train_seeds[0], cfg.train_seeds[-1]],
        "heldout_seeds": [cfg.heldout_seeds[0], cfg.heldout_seeds[-1]],
        "heldout_accuracy_before": round(before[0], 4), "heldout_accuracy": round(after[0], 4),
        "heldout_shuffled_examples": n_mixed,
        "heldout_shuffled_accuracy_before": round(before[1], 4),
        "heldout_shuffled_accuracy": round(after[1], 4),
        f"retrieval_recall_at_{cfg.k}": round(_recall(held), 4),
        "training": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
                     if k not in ("losses", "optimizer_state")},
        "losses": [round(x, 4) for x in metrics.get("losses", [])], "seconds": round(seconds, 1),
    }
