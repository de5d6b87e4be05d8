"""``ldengine finetune --method write`` and ``--method read``: the student taught to write a
function for a rule, and to read a rule in words into the task's rule language."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ldengine.cache import read_json
from ldengine.emergency.rule import kinds_of
from ldengine.emergency.teach import pass_rates, rule_languages, writing_data
from ldengine.emergency.write import TEMPERATURE
from ldengine.errors import LDEngineError
from ldengine.finetune.config import _header, _save, FinetuneConfig
from ldengine.functionbase import FunctionBase
from ldengine.models import load_student
from ldengine.registry import Registry
from ldengine.retriever import Encoder
from ldengine.rulelang import clause_training, Namer, read


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
