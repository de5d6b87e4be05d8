"""``ldengine finetune``: teach the student the manual by LoRA on selection examples.

Training data: every stage the expert meets on seeded training games
(its input state -> query -> the retriever's top-K, the oracle's index), with
candidate order shuffled; evaluation: the same on held-out seeds, in the
retriever's own order, exactly as the ``ld`` agent will see it. The adapter is
saved with a manifest that pins the base model file, the function base and the
data, and records held-out accuracy and retrieval recall.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ldengine.adapters import adapter_roots, default_adapter_dir, shared_adapter_dir
from ldengine.cache import cache_root, read_json
from ldengine.emergency.rule import kinds_of
from ldengine.emergency.teach import emergency_selection_examples, pass_rates, rule_languages, writing_data
from ldengine.emergency.write import TEMPERATURE
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.ld import RetrieverProvider, SelectionExample, selection_examples, stage_inputs
from ldengine.reading import reading_examples
from ldengine.rulelang import Namer, clause_training, read
from ldengine.models import load_student
from ldengine.contracts import task_evader
from ldengine.registry import Registry, default_task
from ldengine.retriever import Encoder, Retriever
from ldengine.version import __version__


@dataclass
class FinetuneConfig:
    task: str = field(default_factory=default_task)     # default: the first task registered (pursuit)
    student: str | None = None          # None: the default student (SmolLM2 GGUF)
    steps: int = 24
    batch_size: int = 8
    lr: float = 3e-3
    rank: int = 8
    top_layers: int | None = 6          # LoRA on the last N decoder layers (None: all)
    lora_modules: tuple[str, ...] = ("q_proj", "v_proj")    # the projections LoRA adapts
    k: int = 5
    shuffles: int = 8                   # held-out: each distinct selection in this many candidate orders
    train_seeds: list[int] = field(default_factory=lambda: list(range(10_000, 10_010)))
    heldout_seeds: list[int] = field(default_factory=lambda: list(range(20_000, 20_010)))
    # selections with an emergency in force: training kinds only; the evaluated kinds are held out
    emergency_seeds: list[int] = field(default_factory=lambda: [0, 1])
    emergency_steps: int = 4
    seed: int = 0
    out: str | None = None
    start_adapter: str | None = None    # continue this adapter (e.g. on a base with new functions)
    device: str | None = None           # None: the GPU when torch sees one, else the CPU
    # Selections at a stage with alternatives are repeated this often: the state decides
    # them, and they are few beside the stages with one function.
    alternatives_weight: int = 3
    # ... and a rarer right function up to this many times more (1: no balancing).
    balance_cap: int = 1
    # Only a promoted adapter becomes the default (find_adapter): a new one is used where asked
    # (--adapter DIR) until someone decides it should replace the committed one.
    promote: bool = False
    # --method write: rules of the task's generated rule language added to the training data,
    # and rules of its held-out shapes (in held-out wordings) measured after training
    generated_rules: int = 0
    heldout_shapes: int = 0
    # --method ld: synthetic selections that teach reading When: fields against the stated facts
    # (``ldengine.reading``), added to the training data; held-out ones (held-out fact families,
    # phrasings and names) measured before and after training
    reading: int = 0
    reading_heldout: int = 200
    # --method write: what the student learns to write, the whole body or the condition only
    # (``emergency.write.FORMS``); the adapter's manifest records it for whoever writes with it
    form: str = "body"
    # --method read: the taught wordings nearest to each clause shown before it (0: none); the
    # manifest records it, and reading with the adapter shows as many
    near: int = 0

    @property
    def tasks(self) -> list[str]:
        """``task`` may name several, comma-separated: one adapter is trained on all of them."""
        return [t.strip() for t in self.task.split(",") if t.strip()]


def check_promotable(cfg: FinetuneConfig) -> None:
    """For the command line: a promoted adapter saved where ``find_adapter`` does not look
    would not become the default, so --promote there is refused before training."""
    roots = {r.resolve() for task in cfg.tasks for r in adapter_roots(task)}
    if cfg.promote and cfg.out and Path(cfg.out).expanduser().resolve().parent not in roots:
        raise LDEngineError(f"--promote: the default adapter is looked for in {', '.join(map(str, sorted(roots)))}, "
                            f"not in {Path(cfg.out).parent}; leave out --out and --quick to save it there, or leave "
                            "out --promote and play it with --adapter DIR")


def quick(cfg: FinetuneConfig) -> FinetuneConfig:
    """A smoke run that checks the whole pipeline in a couple of minutes: 2 steps on
    the selections of 2 training games, scored on 2 held-out games (2 shuffles, one
    emergency seed of 1 step). Its adapter is saved in the cache, never beside the
    committed ones, so no agent picks it up unless asked (``--adapter``)."""
    out = cfg.out or str(cache_root() / "adapters" / f"quick-{'+'.join(cfg.tasks)}-{time.strftime('%Y%m%d-%H%M%S')}")
    return replace(cfg, steps=2, train_seeds=cfg.train_seeds[:2], heldout_seeds=cfg.heldout_seeds[:2],
                   shuffles=2, emergency_seeds=cfg.emergency_seeds[:1], emergency_steps=1, out=out,
                   reading=min(cfg.reading, 16), reading_heldout=min(cfg.reading_heldout, 8))


def weighted(examples: list[SelectionExample], base: FunctionBase, times: int, cap: int = 1) -> list[SelectionExample]:
    """Each example at a stage with several functions ``times`` times, the others once; at
    such a stage, an example whose right function is rarer than the stage's commonest is
    repeated more, up to ``cap`` times as often, so that a state met seldom (a pursuer
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
    of the 16 steps' 128 draws: the extras plugin's continuation took pursuit's held-out
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


def trained_functions(base: FunctionBase) -> dict[str, str]:
    """Name -> source hash of every teacher function the adapter learnt: a base that still
    holds all of them (plus new ones) can use the adapter."""
    return {n: e.source_hash for n, e in sorted(base.entries.items()) if e.module not in base.untrusted}


def trained_facts(base: FunctionBase) -> dict[str, str]:
    """Name -> source hash of every teacher fact its queries stated (``fact_`` defs)."""
    return {n: f.source_hash for n, f in sorted(base.facts.items()) if f.module not in base.untrusted}


def data_hash(examples: list[SelectionExample]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps(e.as_tuple()).encode())
    return h.hexdigest()


def accuracy(student: Any, examples: list[SelectionExample], batch: int = 16, desc: str = "") -> float:
    """Share of examples where the student picks the right option (a miss counts wrong);
    with ``desc``, a progress bar on standard error."""
    right = 0
    for i in tqdm(range(0, len(examples), batch), desc=desc, unit="batch", disable=not desc, leave=False):
        chunk = examples[i:i + batch]
        picks = student.select_batch([(e.prefix, e.query, list(e.options)) for e in chunk])
        right += sum(p.index == e.answer for p, e in zip(picks, chunk))
    return right / len(examples) if examples else 0.0


def shuffled(examples: list[SelectionExample], times: int, seed: int = 0) -> list[SelectionExample]:
    """Each distinct example with its candidates in ``times`` random orders.

    In the retriever's order the right function is nearly always first, so a
    student that always picks the first candidate would look perfect there;
    shuffled, it would score 1/K. Both accuracies are reported.
    """
    rng, out = random.Random(seed), []
    for e in dict.fromkeys(examples):
        if e.answer < 0:
            continue
        for _ in range(times):
            options = list(e.options)
            right = options[e.answer]
            rng.shuffle(options)
            out.append(replace(e, options=tuple(options), answer=options.index(right)))
    return out


def build_data(registry: Registry, cfg: FinetuneConfig, retriever: Any = None, progress: bool = False):
    """Training and held-out selection examples, plus the retriever used. With the
    task's training emergency kinds in force, more training examples (the new stage
    in the pipeline, its reference function in the base); the evaluated kinds give
    held-out ones (``emergency_held``: never trained on)."""
    task = registry.get("tasks", cfg.task).obj
    base = FunctionBase.build(cfg.task, registry.modules_for(cfg.task))
    retriever = retriever or Retriever.for_library(base, registry)
    provider = RetrieverProvider(task, base, retriever, cfg.k)
    evader = registry.policy(task_evader(task))        # the task's own (pursuit: greedy; None without one)
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
    if cfg.emergency_seeds and hasattr(task, "with_emergency"):
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
    retriever: Any
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


def _accuracies(student: Any, held: list, mixed: list, emergency_held: list) -> tuple:
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


def _version_name(student: Any, base: FunctionBase, cfg: FinetuneConfig) -> str:
    return f"{student.name}-base{base.hash[:8]}-s{cfg.steps}"


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


KD_TRAIN_GAMES = 221   # the paper's KD data set: expert rollouts from 221 seeded random starts


def finetune_kd(registry: Registry, cfg: FinetuneConfig, progress: bool = True, log=print,
                eval_every: int | None = None, patience: int | None = None) -> dict:
    """Knowledge distillation: LoRA on the expert's moves (one example per pursuer and
    step of seeded expert games); held-out move accuracy before and after; saves
    adapter and manifest. The task plugin provides the data (``task.kd``).

    With ``eval_every`` it draws a learning curve: held-out move accuracy every
    ``eval_every`` steps, each point a checkpoint in ``cfg.out`` (adapter, optimizer,
    ``curve.json``, ``curve.png``, ``curve.md``) that a later run with the same
    settings continues from; ``patience`` stops at the plateau, when that many points
    in a row bring no new best (by at least one held-out move).
    """
    start = time.perf_counter()
    task = registry.get("tasks", cfg.task).obj
    kd = getattr(task, "kd", None)
    if kd is None:
        raise LDEngineError(f"task {cfg.task!r} offers no knowledge-distillation data (--method kd)")
    if eval_every and not cfg.out:
        raise LDEngineError("a learning curve (--eval-every) needs --out, the folder its checkpoints go to")
    base = FunctionBase.build(cfg.task, registry.modules_for(cfg.task))
    evader = registry.policy(task_evader(task))        # the task's own (pursuit: greedy; None without one)
    train = kd.move_examples(task, base, evader, cfg.train_seeds)
    held = kd.move_examples(task, base, evader, cfg.heldout_seeds)
    log(f"data: {len(train)} training moves from {len(cfg.train_seeds)} expert games, "
        f"{len(held)} held-out moves from {len(cfg.heldout_seeds)}")
    digest = hashlib.sha256(json.dumps([(e.question, e.answer) for e in train]).encode()).hexdigest()
    curve = KDCurve(Path(cfg.out), cfg, digest) if eval_every and cfg.out else None
    student = load_student(cfg.student, device=cfg.device)
    if curve is not None and curve.resume(student):
        before = curve.points[0]
        log(f"continuing the learning curve in {cfg.out} from step {curve.step} "
            f"(held-out move accuracy {curve.points[-1]['move_accuracy']:.3f})")
    else:
        before = kd.move_accuracy(student, task.rules, held)
        if curve:
            curve.add(0, before, None)
    log(f"held-out move accuracy before training: {before['move_accuracy']:.3f} "
        f"(legal answers {before['legal_answer_rate']:.3f})")
    prefix = kd.rules_prefix(task.rules)
    examples = [(prefix, e.question, e.answer) for e in train]

    def train_to(steps: int, first: int = 0, state: dict | None = None) -> dict:
        return student.train_lora_text(examples, steps=steps, lr=cfg.lr, batch_size=cfg.batch_size, rank=cfg.rank,
                                       seed=cfg.seed, progress=progress, top_layers=cfg.top_layers,
                                       modules=list(cfg.lora_modules), start_step=first, optimizer_state=state)

    if curve is None or not eval_every:
        metrics = train_to(cfg.steps)
    else:
        metrics = {}
        while curve.step < cfg.steps and not curve.plateau(patience):
            target = min(curve.step + eval_every, cfg.steps)
            metrics = train_to(target, curve.step, curve.optimizer_state)
            point = kd.move_accuracy(student, task.rules, held)
            curve.add(target, point, metrics, student)
            log(f"step {target}: held-out move accuracy {point['move_accuracy']:.3f} "
                f"(legal answers {point['legal_answer_rate']:.3f}), loss {metrics['final_loss']:.3f}, "
                f"{metrics['examples_per_second']} examples/s")
        if curve.plateau(patience):
            log(f"plateau: no new best in the last {patience} points; stopped at step {curve.step}")
        metrics = curve.metrics(metrics)
    kept = curve.kept if curve else None
    if curve and kept and kept["step"] != curve.step:   # the adapter saved is the best point's, not the last
        log(f"keeping the best point's adapter (step {kept['step']}, {kept['move_accuracy']:.3f}), "
            f"not the last one's (step {curve.step}, {curve.points[-1]['move_accuracy']:.3f})")
        student = load_student(cfg.student, adapter=curve.folder / "best", device=cfg.device)
    after = kd.move_accuracy(student, task.rules, held) if kept is None else kept
    log(f"held-out move accuracy after {after.get('step', cfg.steps)} steps: {after['move_accuracy']:.3f} "
        f"(legal answers {after['legal_answer_rate']:.3f})")
    manifest = {
        **_header(cfg, student, base, "kd"), "data_sha256": digest,
        "train_games": len(cfg.train_seeds), "train_examples": len(train), "heldout_examples": len(held),
        "heldout_move_accuracy_before": round(before["move_accuracy"], 4),
        "heldout_legal_answer_rate_before": round(before["legal_answer_rate"], 4),
        "heldout_move_accuracy": round(after["move_accuracy"], 4),
        "heldout_legal_answer_rate": round(after["legal_answer_rate"], 4),
    }
    if curve:
        manifest["examples_seen"] = curve.step * cfg.batch_size
        manifest["adapter_step"] = after["step"]
        manifest["learning_curve"] = [{k: p[k] for k in ("step", "move_accuracy", "legal_answer_rate")}
                                      for p in curve.points]
    return _save(cfg, student, base, manifest, metrics, start, "kd")


class KDCurve:
    """The KD learning curve's points and checkpoint in one folder: ``curve.json`` (the
    settings it belongs to and every point), ``checkpoint/`` (the adapter and the
    optimizer after the last point), ``best/`` (the adapter of the best point so far),
    ``curve.png`` and ``curve.md``. Each point is
    written whole before it counts, so an interrupted run loses at most the steps
    since the last point."""

    def __init__(self, folder: Path, cfg: FinetuneConfig, data_sha256: str):
        self.folder, self.step = folder, 0
        self.points: list[dict] = []
        self.optimizer_state: dict | None = None
        self.settings = {"task": cfg.task, "data_sha256": data_sha256, "batch_size": cfg.batch_size, "lr": cfg.lr,
                         "rank": cfg.rank, "top_layers": cfg.top_layers, "seed": cfg.seed,
                         "heldout_seeds": [cfg.heldout_seeds[0], cfg.heldout_seeds[-1]]}
        self.seconds = 0.0

    def resume(self, student: Any) -> bool:
        """Load the checkpoint when the folder holds one of these settings (refused if it
        holds another run's)."""
        import torch
        path = self.folder / "curve.json"
        if not path.is_file():
            return False
        saved = json.loads(path.read_text())
        if saved.get("settings") != self.settings:
            differ = sorted(k for k in self.settings if saved.get("settings", {}).get(k) != self.settings[k])
            raise LDEngineError(f"{self.folder} holds a learning curve of other settings ({', '.join(differ)} "
                                f"differ); give another --out, or the same settings to continue it")
        self.points, self.step = saved["points"], saved["points"][-1]["step"]
        self.seconds = saved.get("training_seconds", 0.0)
        if self.step:
            student.load_adapter(self.folder / "checkpoint")
            self.optimizer_state = torch.load(self.folder / "checkpoint" / "optimizer.pt", weights_only=True)
        return True

    def plateau(self, patience: int | None) -> bool:
        if not patience or len(self.points) <= patience:
            return False
        best_before = max(p["move_accuracy"] for p in self.points[:-patience])
        one_move = 1 / max(self.points[-1]["heldout_moves"], 1)
        return max(p["move_accuracy"] for p in self.points[-patience:]) < best_before + one_move - 1e-9

    @property
    def best(self) -> dict:
        """The first point of the highest held-out move accuracy (step 0 before training)."""
        return max(self.points, key=lambda p: (p["move_accuracy"], -p["step"]))

    @property
    def kept(self) -> dict:
        """The point whose adapter the run saves: the best trained one (``best/``), or the
        last when training never beat the untrained student."""
        return self.best if self.best["step"] and (self.folder / "best").is_dir() else self.points[-1]

    def add(self, step: int, accuracy: dict, metrics: dict | None, student: Any = None) -> None:
        import torch
        new_best = bool(self.points) and round(accuracy["move_accuracy"], 4) > self.best["move_accuracy"]
        point = {"step": step, "move_accuracy": round(accuracy["move_accuracy"], 4),
                 "legal_answer_rate": round(accuracy["legal_answer_rate"], 4),
                 "heldout_moves": accuracy["moves"],
                 "loss": round(metrics["final_loss"], 4) if metrics else None,
                 "examples_per_second": metrics["examples_per_second"] if metrics else None}
        self.folder.mkdir(parents=True, exist_ok=True)
        if metrics:
            self.seconds += metrics["seconds"]
            checkpoint = self.folder / "checkpoint"
            student.save_adapter(checkpoint, {"method": "kd", "checkpoint_step": step})
            torch.save(metrics["optimizer_state"], checkpoint / "optimizer.pt.tmp")
            (checkpoint / "optimizer.pt.tmp").replace(checkpoint / "optimizer.pt")
            self.optimizer_state = metrics["optimizer_state"]
            if new_best:
                student.save_adapter(self.folder / "best", {"method": "kd", "checkpoint_step": step,
                                                            "move_accuracy": point["move_accuracy"]})
        self.points.append(point)
        self.step = step
        record = {"settings": self.settings, "points": self.points, "training_seconds": round(self.seconds, 1)}
        tmp = self.folder / "curve.json.tmp"
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(self.folder / "curve.json")
        self._table()
        self._figure()

    def metrics(self, last: dict) -> dict:
        """The training figures of the whole curve (the last piece's examples/s)."""
        return {"steps": self.step, "batch_size": self.settings["batch_size"], "seconds": self.seconds,
                "final_loss": self.points[-1]["loss"],
                "examples_per_second": last.get("examples_per_second", self.points[-1]["examples_per_second"])}

    def _table(self) -> None:
        rows = ["| step | examples seen | held-out move accuracy | legal answers | training loss |",
                "|---|---|---|---|---|"]
        for p in self.points:
            loss = "" if p["loss"] is None else f"{p['loss']:.3f}"
            rows.append(f"| {p['step']} | {p['step'] * self.settings['batch_size']:,} | {p['move_accuracy']:.3f} | "
                        f"{p['legal_answer_rate']:.3f} | {loss} |")
        (self.folder / "curve.md").write_text("\n".join(rows) + "\n")

    def _figure(self) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        steps = [p["step"] for p in self.points]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, [p["move_accuracy"] for p in self.points], marker="o", label="the expert's cell")
        ax.plot(steps, [p["legal_answer_rate"] for p in self.points], marker=".", linestyle="--",
                label="a legal cell")
        ax.set_xlabel(f"training steps (batches of {self.settings['batch_size']} moves)")
        ax.set_ylabel("share of held-out moves")
        ax.set_ylim(0, 1)
        ax.set_title(f"KD learning curve ({self.settings['task']})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.savefig(self.folder / "curve.png", dpi=120, bbox_inches="tight")
        plt.close(fig)


def _header(cfg: FinetuneConfig, student: Any, base: FunctionBase, method: str) -> dict:
    """What every text-adapter manifest starts with: when, what, from which base and seeds."""
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "engine_version": __version__, "task": cfg.task, "method": method, "promoted": cfg.promote,
            "base_model": student.name, "base_model_sha256": student.model_hash,
            "function_base_hash": base.hash, "examples_seen": cfg.steps * cfg.batch_size,
            "trained_functions": {cfg.task: trained_functions(base)},
        "trained_facts": {cfg.task: trained_facts(base)},
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("train_seeds", "heldout_seeds")},
            "train_seeds": [cfg.train_seeds[0], cfg.train_seeds[-1]],
            "heldout_seeds": [cfg.heldout_seeds[0], cfg.heldout_seeds[-1]]}


def _save(cfg: FinetuneConfig, student: Any, base: FunctionBase, manifest: dict, metrics: dict,
          start: float, suffix: str) -> dict:
    """Adds the training figures, saves adapter + manifest (default: a versioned folder)."""
    manifest.update({"training": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
                                  if k not in ("losses", "optimizer_state")},
                     "losses": [round(x, 4) for x in metrics.get("losses", [])],
                     "seconds": round(time.perf_counter() - start, 1)})
    out = Path(cfg.out) if cfg.out else (default_adapter_dir(cfg.task)
                                         / f"{_version_name(student, base, cfg)}-{suffix}")
    student.save_adapter(out, manifest)
    manifest["path"] = str(out)
    return manifest


def _writing_start(cfg: FinetuneConfig) -> dict:
    """The manifest of the writing adapter a run continues ({} for a fresh one); refused unless
    it is a writing adapter of the same form."""
    if not cfg.start_adapter:
        return {}
    earlier = read_json(Path(cfg.start_adapter) / "manifest.json") or {}
    if earlier.get("method") != "write":
        raise LDEngineError(f"{cfg.start_adapter} is not a writing adapter (its manifest's method is "
                            f"{earlier.get('method')!r}): --method write continues one trained with --method write")
    form = earlier.get("form", "body")
    if form != cfg.form:
        raise LDEngineError(f"{cfg.start_adapter} writes in the {form} form: continue it with --form {form}")
    return earlier


WRITE_TRAIN_SEEDS = list(range(1, 41))
WRITE_HELDOUT_SEEDS = list(range(100, 110))


def finetune_write(registry: Registry, cfg: FinetuneConfig, attempts: int = 8, progress: bool = True,
                   log=print) -> dict:
    """Teach the student to write emergency functions: LoRA on the teacher's functions for
    the training kinds only; then, for every evaluated (held-out) kind, the share of
    seeds whose written function passes verification within ``attempts``, before and
    after. Saves adapter and manifest (method ``write``)."""
    start = time.perf_counter()
    registry.get("tasks", cfg.task)
    held_kinds, train_kinds = kinds_of(registry, cfg.task, "eval"), kinds_of(registry, cfg.task, "train")
    if not train_kinds:
        raise LDEngineError(f"task {cfg.task!r} has no training emergency kinds (--method write)")
    earlier = _writing_start(cfg)
    seen_before = int(earlier.get("examples_seen", 0))
    data = writing_data(registry, cfg.task, cfg.train_seeds, cfg.generated_rules, cfg.form)
    shapes = rule_languages(registry, cfg.task, cfg.heldout_shapes, split="eval", wording="eval") \
        if cfg.heldout_shapes else []
    log(f"data: {len(data)} functions of {len(train_kinds)} training kinds"
        + (f" and {cfg.generated_rules} generated rules of the training shapes" if cfg.generated_rules else "")
        + f"; held out: {', '.join(k.name for k in held_kinds)}"
        + (f" and {len(shapes)} rules of held-out shapes in held-out wordings" if shapes else "")
        + f"; the student writes {'the whole body' if cfg.form == 'body' else 'the allowed-move condition only'}")
    if earlier:
        log(f"continuing {Path(cfg.start_adapter or '').name} after its {seen_before} examples at lr {cfg.lr:g}")
    student = load_student(cfg.student, adapter=cfg.start_adapter, device=cfg.device)
    base = FunctionBase.build(cfg.task, registry.modules_for(cfg.task))
    # A continuation draws its batches with another seed, so that it does not read the examples in
    # the order the first run began with.
    metrics = student.train_lora_text(data, steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size,
                                      rank=cfg.rank, seed=cfg.seed + seen_before,
                                      progress=progress, top_layers=cfg.top_layers,
                                      modules=list(cfg.lora_modules), chat=False)
    log(f"loss {metrics['first_loss']:.3f} -> {metrics['final_loss']:.3f} in {metrics['seconds']:.0f} s")
    after = pass_rates(registry, cfg.task, student, held_kinds, cfg.heldout_seeds, attempts, progress, cfg.form)
    for name, row in after.items():
        log(f"held-out kind {name}: passed {row['passed']}/{row['seeds']} seeds within {attempts} attempts "
            f"(mean attempts to pass {row['mean_attempts_to_pass']})")
    shaped = pass_rates(registry, cfg.task, student, shapes, [0], attempts, progress, cfg.form) if shapes else {}
    for kind in shapes:
        log(f"held-out shape {kind.summary}: attempts to pass {shaped[kind.name]['attempts_to_pass'][0] or '-'}")
    if shapes:
        log(f"held-out shapes: {sum(r['passed'] for r in shaped.values())}/{len(shapes)} passed within {attempts} attempts")
    digest = hashlib.sha256(json.dumps(data).encode()).hexdigest()
    manifest = {
        **_header(cfg, student, base, "write"), "form": cfg.form, "data_sha256": digest, "train_examples": len(data),
        "train_kinds": [k.name for k in train_kinds], "held_out_kinds": [k.name for k in held_kinds],
        "attempts": attempts, "sampling_temperature": TEMPERATURE, "heldout_pass_rates": after,
    }
    if earlier:
        manifest["continuation"] = {"from": Path(cfg.start_adapter or "").name,
                                    "adapter_hash": earlier.get("adapter_hash"),
                                    "examples_seen_before": seen_before,
                                    "same_data": earlier.get("data_sha256") == digest}
        manifest["examples_seen"] += seen_before
    if cfg.generated_rules or shapes:
        manifest["generated_rules"] = cfg.generated_rules
        manifest["heldout_shapes"] = {kind.summary + " " + kind.name: shaped[kind.name]["attempts_to_pass"][0]
                                      for kind in shapes}
    return _save(cfg, student, base, manifest, metrics, start, "write")


READ_TRAIN_RULES = 1200         # generated rules of the training shapes, in training words
READ_CLAUSES = 1000             # single-primitive rules: every primitive in its taught words


def finetune_read(registry: Registry, cfg: FinetuneConfig, progress: bool = True, log=print) -> dict:
    """Teach the student to read the clauses of rules in words into the task's rule language
    (``rulelang``, tag then compose): LoRA on the candidate clauses the language's frames and
    connectives make of generated rules of its training shapes in training words (a clause
    answered with its primitive, a fragment or a compound with ``none``); measured on
    ``cfg.heldout_shapes`` rules of held-out shapes in held-out words (the top reading's
    denotation against the rule's). Saves adapter and manifest (method ``read``)."""
    start = time.perf_counter()
    if cfg.task not in registry.rule_languages:
        raise LDEngineError(f"task {cfg.task!r} has no rule language (ldengine_register_rule_languages)")
    language = registry.rule_languages[cfg.task].obj
    rules = cfg.generated_rules or READ_TRAIN_RULES
    pairs = language.examples(rules, seed=0) + language.clause_examples(READ_CLAUSES)
    namer = Namer(lambda: Encoder().encode, language)
    data = clause_training(language, pairs, seed=cfg.seed, namer=namer, near=cfg.near)
    nones = sum(answer == " none" for _, _, answer in data)
    log(f"data: {len(data)} clauses ({len(data) - nones} primitives, {nones} none) from {rules} rules of the "
        f"training shapes in training words and {READ_CLAUSES} single clauses"
        + (f", each after the {cfg.near} taught wordings nearest to it" if cfg.near else ""))
    student = load_student(cfg.student, adapter=cfg.start_adapter, device=cfg.device)
    base = FunctionBase.build(cfg.task, registry.modules_for(cfg.task))
    metrics = student.train_lora_text(data, steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size, rank=cfg.rank,
                                      seed=cfg.seed, progress=progress, top_layers=cfg.top_layers,
                                      modules=list(cfg.lora_modules))
    log(f"loss {metrics['first_loss']:.3f} -> {metrics['final_loss']:.3f} in {metrics['seconds']:.0f} s")
    held = language.examples(cfg.heldout_shapes, seed=0, split="eval", wording="eval") if cfg.heldout_shapes else []
    exact = 0
    for text, program in held:
        readings = read(student, language, text, namer=namer, near=cfg.near)
        exact += bool(readings) and language.denotation(readings[0].program) == language.denotation(program)
    if held:
        log(f"held-out shapes in held-out words: {exact}/{len(held)} read exactly (every move)")
    manifest = {**_header(cfg, student, base, "read"), "language": type(language).__name__,
                "reader": "clauses-near" if cfg.near else "clauses", "near": cfg.near,
                "data_sha256": hashlib.sha256(json.dumps([list(d) for d in data]).encode()).hexdigest(),
                "train_examples": len(data), "generated_rules": rules, "clauses": READ_CLAUSES,
                "heldout_rules": len(held), "heldout_exact": exact}
    return _save(cfg, student, base, manifest, metrics, start, "read")
