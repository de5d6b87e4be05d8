"""What every fine-tuning method shares: its configuration, the held-out accuracy, the
adapter's name, manifest header and saving."""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from ldengine.adapters import adapter_roots, default_adapter_dir, quick_adapter_dir
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.ld import SelectionExample
from ldengine.registry import default_task
from ldengine.version import __version__

if TYPE_CHECKING:
    from ldengine.contracts import Student
    from ldengine.models import TransformersStudent
    from ldengine.registry import Registry


@dataclass
class FinetuneConfig:
    task: str = field(default_factory=default_task)     # default: the first task registered
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


def check_promotable(cfg: FinetuneConfig, registry: Registry) -> None:
    """For the command line: a promoted adapter saved where ``find_adapter`` does not look
    would not become the default, so --promote there is refused before training."""
    roots = {r.resolve() for task in cfg.tasks for r in adapter_roots(registry.task(task))}
    if cfg.promote and cfg.out and Path(cfg.out).expanduser().resolve().parent not in roots:
        raise LDEngineError(f"--promote: the default adapter is looked for in {', '.join(map(str, sorted(roots)))}, "
                            f"not in {Path(cfg.out).parent}; leave out --out and --quick to save it there, or leave "
                            "out --promote and play it with --adapter DIR")


def quick(cfg: FinetuneConfig) -> FinetuneConfig:
    """A smoke run that checks the whole pipeline in a couple of minutes: 2 steps on
    the selections of 2 training games, scored on 2 held-out games (2 shuffles, one
    emergency seed of 1 step). Its adapter is saved in the cache, never beside the
    committed ones, so no agent picks it up unless asked (``--adapter``)."""
    out = cfg.out or str(quick_adapter_dir() / f"quick-{'+'.join(cfg.tasks)}-{time.strftime('%Y%m%d-%H%M%S')}")
    return replace(cfg, steps=2, train_seeds=cfg.train_seeds[:2], heldout_seeds=cfg.heldout_seeds[:2],
                   shuffles=2, emergency_seeds=cfg.emergency_seeds[:1], emergency_steps=1, out=out,
                   reading=min(cfg.reading, 16), reading_heldout=min(cfg.reading_heldout, 8))


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


def accuracy(student: Student, examples: list[SelectionExample], batch: int = 16, desc: str = "") -> float:
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


def _version_name(student: Student, base: FunctionBase, cfg: FinetuneConfig) -> str:
    return f"{student.name}-base{base.hash[:8]}-s{cfg.steps}"


def _header(cfg: FinetuneConfig, student: Student, base: FunctionBase, method: str) -> dict:
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


def _save(cfg: FinetuneConfig, student: TransformersStudent, base: FunctionBase, manifest: dict,
          metrics: dict, start: float, suffix: str) -> dict:
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
