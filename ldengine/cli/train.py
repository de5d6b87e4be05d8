"""``ldengine finetune`` and ``distill``: training the student and distilling the function base."""

from __future__ import annotations

from pathlib import Path

import click

from ldengine.adapters import default_adapter_dir, shared_adapter_dir
from ldengine.cli.app import _check_outputs, _device_option, _task_option, cli, registry
from ldengine.distill.conversation import DistillConfig, distill as run_distill
from ldengine.finetune import (FinetuneConfig, KD_TRAIN_GAMES, WRITE_HELDOUT_SEEDS, WRITE_TRAIN_SEEDS,
                               check_promotable, finetune as run_finetune, finetune_kd, finetune_read, finetune_write,
                               quick as quick_config)
from ldengine.models.loading import chosen_device
from ldengine.models.lora import LORA_MODULES


@cli.command()
@_task_option(help="The task; for --method ld several, comma-separated (TASK1,TASK2): one adapter "
                   "learns every one's manual and is saved in the data folder's adapters/.")
@click.option("--student", type=click.Path(exists=True), help="Student model (default: SmolLM2-135M-Instruct GGUF).")
@click.option("--steps", default=24, show_default=True, type=click.IntRange(1, 100_000), help="LoRA training steps.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1, 512),
              help="Training examples per LoRA step.")
@click.option("--lr", default=3e-3, show_default=True, type=click.FloatRange(1e-6, 1.0),
              help="Learning rate of the LoRA weights (AdamW).")
@click.option("--top-layers", default=6, show_default=True, type=click.IntRange(0, 1000), help="LoRA on the last N layers (0: all).")
@click.option("--rank", default=8, show_default=True, type=click.IntRange(1, 512), help="LoRA rank of a new adapter.")
@click.option("--lora-modules", default="q_proj,v_proj", show_default=True, metavar="NAMES",
              help="The projections a new adapter adapts, comma-separated, of: " + ", ".join(LORA_MODULES) + ".")
@click.option("--train-games", type=click.IntRange(1, 10_000),
              help="Expert games for training data [ld: 10, kd: 221]; write: parameter seeds per kind [40].")
@click.option("--heldout-games", type=click.IntRange(1, 10_000),
              help="Held-out games for evaluation [ld: 10, kd: 3]; write: seeds per held-out kind [10].")
@click.option("--method", type=click.Choice(["ld", "kd", "write", "read"]), default="ld", show_default=True,
              help="ld: select the manual's functions; kd: copy the expert's moves (the KD baseline); "
                   "write: write functions for emergencies (trained on the training kinds only).")
@click.option("--attempts", default=8, show_default=True, type=click.IntRange(1, 64),
              help="write: attempts per held-out rule when measuring the pass rate.")
@click.option("--generated-rules", default=0, show_default=True, type=click.IntRange(0, 100_000),
              help="write: add this many rules of the task's generated rule language (its training shapes "
                   "and wordings) to the training data.")
@click.option("--heldout-shapes", default=0, show_default=True, type=click.IntRange(0, 10_000),
              help="write: after training, measure this many rules of shapes held out whole, in held-out "
                   "wordings (each verified exhaustively).")
@click.option("--near", default=0, show_default=True, type=click.IntRange(0, 12),
              help="read: show the reader the taught wordings of this many primitives nearest to each clause "
                   "(a sentence encoder picks them), so it compares instead of recalling; the manifest records it.")
@click.option("--form", type=click.Choice(["body", "condition"]), default="body", show_default=True,
              help="write: what the student learns to write: the whole function body, or only the allowed-move "
                   "condition inside a body the engine writes (the adapter's manifest records it).")
@click.option("--out", type=click.Path(file_okay=False), help="Adapter folder (default: a versioned folder under the data folder's TASK/adapters/, ~/.local/share/ldengine unless LDENGINE_DATA is set).")
@click.option("--from-adapter", "from_adapter", type=click.Path(exists=True, file_okay=False),
              help="ld: continue training this adapter (e.g. after a plugin added functions) instead of a new one: "
                   "on the selections where a function it never learnt is a candidate, with as many of the others "
                   "replayed (all of them when nothing is new); write: continue a writing adapter of the same "
                   "--form on the same data, its batches in a new order.")
@click.option("--balance", default=8, show_default=True, type=click.IntRange(1, 100),
              help="ld: at a stage with alternatives, repeat an example whose right function is rarer than the "
                   "commonest up to this many times more (1: no balancing).")
@click.option("--reading", default=0, show_default=True, type=click.IntRange(0, 100_000),
              help="ld: add this many synthetic selections that teach reading When: fields against the stated "
                   "facts (made-up facts and alternatives); 200 more, of held-out fact families, phrasings and "
                   "names, are measured before and after training.")
@click.option("--quick", is_flag=True,
              help="ld: a smoke run (2 steps, 2 training and 2 held-out games) that checks the pipeline in a "
                   "couple of minutes; its adapter goes to the cache, not beside the committed ones.")
@click.option("--eval-every", type=click.IntRange(1, 100_000),
              help="kd: a learning curve: held-out move accuracy every N steps, each point a checkpoint in --out "
                   "(curve.json, curve.png, curve.md) that the same command continues after an interruption.")
@click.option("--patience", type=click.IntRange(1, 1000),
              help="kd with --eval-every: stop at the plateau, when this many points in a row bring no new best.")
@click.option("--promote", is_flag=True,
              help="Make the new adapter the default (the newest promoted one is used when --adapter is not "
                   "given); without it, the run prints the --adapter DIR to use it.")
@_device_option
def finetune(task, student, steps, batch_size, lr, top_layers, rank, lora_modules, train_games, heldout_games, method,
             attempts, generated_rules, heldout_shapes, near, form, out, from_adapter, balance, reading, quick,
             eval_every, patience, promote, device):
    """Fine-tune the student (LoRA) and save adapter + manifest.

    --method ld teaches it to select the manual's functions (Logic Distillation);
    --method kd teaches it to write the expert's move (for each piece);
    --method write teaches it to write functions for new rules (emergencies), on
    the training kinds only, and measures it on the held-out kinds.
    """
    tasks = [t.strip() for t in task.split(",") if t.strip()]
    for name in tasks or [task]:
        registry().get("tasks", name)
    modules = tuple(dict.fromkeys(m.strip() for m in lora_modules.split(",") if m.strip()))
    unknown = [m for m in modules if m not in LORA_MODULES]
    if unknown or not modules:
        raise click.UsageError(f"--lora-modules: {', '.join(unknown) or 'none given'}: choose among "
                               f"{', '.join(LORA_MODULES)}")
    shape = {"rank": rank, "lora_modules": modules}
    if len(tasks) > 1 and method != "ld":
        raise click.UsageError(f"--method {method} trains on one task at a time; several tasks need --method ld")
    if from_adapter and method == "kd":
        raise click.UsageError("--from-adapter continues a selection (--method ld) or writing (--method write) "
                               "adapter; a KD run continues from its --out folder (--eval-every)")
    if quick and method != "ld":
        raise click.UsageError("--quick is a smoke run of --method ld; for kd and write pass small --steps "
                               "and --train-games")
    if (eval_every or patience) and method != "kd":
        raise click.UsageError("--eval-every and --patience draw the KD learning curve: use them with --method kd")
    if patience and not eval_every:
        raise click.UsageError("--patience counts the points of a learning curve: give --eval-every too")
    if eval_every and not out:
        raise click.UsageError("--eval-every needs --out, the folder that holds the curve and its checkpoint")
    if method == "read":
        cfg = FinetuneConfig(task, student, steps, batch_size, lr, top_layers=top_layers or None, out=out,
                             promote=promote, start_adapter=from_adapter, **shape, generated_rules=generated_rules,
                             heldout_shapes=heldout_shapes, near=near, device=chosen_device(device))
        _check_adapter_out(cfg)
        manifest = finetune_read(registry(), cfg, log=click.echo)
        click.echo(f"adapter: {manifest['path']}")
        _adapter_use(manifest, cfg)
        return
    if near:
        raise click.UsageError("--near shows a reader the taught wordings nearest to each clause: use it with "
                               "--method read")
    if (generated_rules or heldout_shapes or form != "body") and method != "write":
        raise click.UsageError("--generated-rules, --heldout-shapes and --form train and measure writing: use them "
                               "with --method write")
    if method == "write":
        _finetune_write(task, student, steps, batch_size, lr, top_layers, train_games, heldout_games, attempts, out,
                        promote, generated_rules, heldout_shapes, form, from_adapter, shape)
        return
    train_games = train_games or (KD_TRAIN_GAMES if method == "kd" else 10)
    heldout_games = heldout_games or (3 if method == "kd" else 10)
    cfg = FinetuneConfig(task, student, steps, batch_size, lr, top_layers=top_layers or None, out=out, **shape,
                         start_adapter=from_adapter, device=chosen_device(device), promote=promote, balance_cap=balance,
                         reading=reading,
                         train_seeds=list(range(10_000, 10_000 + train_games)),
                         heldout_seeds=list(range(20_000, 20_000 + heldout_games)))
    cfg = quick_config(cfg) if quick else cfg
    _check_adapter_out(cfg)
    if method == "kd":
        manifest = finetune_kd(registry(), cfg, log=click.echo, eval_every=eval_every, patience=patience)
        click.echo(f"adapter: {manifest['path']}  held-out move accuracy "
                   f"{manifest['heldout_move_accuracy']:.3f} (legal answers {manifest['heldout_legal_answer_rate']:.3f})")
        _adapter_use(manifest, cfg)
        return
    manifest = run_finetune(registry(), cfg, log=click.echo)
    click.echo(f"adapter: {manifest['path']}  held-out accuracy {manifest['heldout_accuracy']:.3f} "
               f"(shuffled candidates {manifest['heldout_shuffled_accuracy']:.3f})"
               + ("" if len(tasks) < 2 else ", pooled over " + ", ".join(tasks)))
    _adapter_use(manifest, cfg)


def _check_adapter_out(cfg) -> None:
    """Before training: --promote only where the default adapter is looked for, and the
    adapter's folder (--out, else the default place) writable."""
    check_promotable(cfg, registry())
    default = shared_adapter_dir() if len(cfg.tasks) > 1 else default_adapter_dir(cfg.task)
    _check_outputs({}, folders={"--out": cfg.out} if cfg.out else {"adapter folder": default})


def _adapter_use(manifest: dict, cfg) -> None:
    """How the new adapter is used: by default (--promote), or where asked."""
    if cfg.promote:
        click.echo(f"promoted: {Path(manifest['path']).name} is now the default adapter for {cfg.task}")
    else:
        click.echo(f"not the default adapter (train with --promote for that); use it with --adapter {manifest['path']}")


def _finetune_write(task, student, steps, batch_size, lr, top_layers, train_seeds, heldout_seeds, attempts, out,
                    promote=False, generated_rules=0, heldout_shapes=0, form="body", from_adapter=None, shape=None):
    cfg = FinetuneConfig(task, student, steps, batch_size, lr, top_layers=top_layers or None, out=out, promote=promote,
                         start_adapter=from_adapter, **(shape or {}),
                         generated_rules=generated_rules, heldout_shapes=heldout_shapes, form=form,
                         train_seeds=list(range(1, 1 + train_seeds)) if train_seeds else WRITE_TRAIN_SEEDS,
                         heldout_seeds=list(range(100, 100 + heldout_seeds)) if heldout_seeds else WRITE_HELDOUT_SEEDS)
    _check_adapter_out(cfg)
    manifest = finetune_write(registry(), cfg, attempts, log=click.echo)
    click.echo(f"adapter: {manifest['path']}")
    _adapter_use(manifest, cfg)


@cli.command()
@click.argument("task")
@click.option("--teacher-url", required=True, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
@click.option("--teacher-model", required=True, help="Model name at the teacher endpoint.")
@click.option("--teacher-key-env", default="LDENGINE_TEACHER_KEY", show_default=True,
              help="Environment variable holding the teacher's API key.")
@click.option("--rules", "rules_file", type=click.Path(exists=True, dir_okay=False),
              help="A file with the rules text (default: the registered task's rules).")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Answers the teacher may give: the first, then repairs after failed checks.")
@click.option("--games", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="Seeded games the expert plays on the new base (no violation, no function error).")
@click.option("--max-tokens", default=8192, show_default=True, type=click.IntRange(256, 1_000_000),
              help="Longest answer asked of the teacher.")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds to wait for one answer.")
def distill(task, teacher_url, teacher_model, teacher_key_env, rules_file, rounds, games, max_tokens, timeout):
    """The teacher turns TASK's rules into a function base (step 1 of Logic Distillation).

    The answer's module is compiled by the sandbox, its docstring examples are run,
    every stage must have one function and the expert must play seeded games on it
    without a violation or a function error; failures go back to the teacher for a
    repair, up to ROUNDS answers. A passing base is stored as a new version under
    the data folder's TASK/versions/ (use it with --function-base VERSION); otherwise
    nothing is stored and the command fails.
    """
    cfg = DistillConfig(task, teacher_url, teacher_model, teacher_key_env, rules_file, rounds, games,
                        max_tokens, timeout)
    result = run_distill(registry(), cfg, log=click.echo)
    if result.stored:
        click.echo(f"stored {result.version} ({result.path}), base hash {result.base_hash[:12]}, "
                   f"after {len(result.rounds)} round(s)")
    else:
        click.echo(f"this base is already stored as {result.version} (same hash {result.base_hash[:12]}); kept it")
    click.echo(f"use it: ldengine run {task} --agent expert --function-base {result.version}")
