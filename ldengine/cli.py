"""The ``ldengine`` command line. User errors become one-line messages here, and only here."""
from __future__ import annotations

import atexit
import io
import json
import os
import re
import stat
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from ldengine import adapters, generated as gen, outputs, runlog
from ldengine.adapters import default_adapter_dir, find_adapter, shared_adapter_dir
from ldengine.agents import AgentContext
from ldengine.cache import cache_parts, cache_root, clean_cache
from ldengine.conditions import PROPOSERS, Readings
from ldengine.contracts import task_evader
from ldengine.distill.conversation import DistillConfig, distill as run_distill
from ldengine.distill.store import version_lines
from ldengine.emergency.adopt import writing_adapter, writing_form
from ldengine.emergency.measure import measure, measure_table
from ldengine.emergency.rule import check_rule_text
from ldengine.emergency.store import save
from ldengine.emergency.board import BoardJudge
from ldengine.emergency.read import compile_reading, refusal_line
from ldengine.emergency.write import confirm, worked_examples, write_function
from ldengine.errors import LDEngineError
from ldengine.evaluate import EvalConfig, command_line, evaluate, write_results
from ldengine.finetune import (KD_TRAIN_GAMES, WRITE_HELDOUT_SEEDS, WRITE_TRAIN_SEEDS, FinetuneConfig,
                               check_promotable, finetune as run_finetune, finetune_kd, finetune_read, finetune_write,
                               quick as quick_config)
from ldengine.functionbase import FunctionBase, base_for, versions_dir
from ldengine.models import load_student
from ldengine.models.loading import chosen_device
from ldengine.models.lora import LORA_MODULES
from ldengine.outputs import check_plot
from ldengine.registry import Registry
from ldengine.retriever import Encoder, Retriever
from ldengine.rulelang import MARGIN, Namer, program_text, read, read_without_model
from ldengine.runner import RunConfig, run_games
from ldengine.sandbox import IsolatedSandbox, Limits, compile_module
from ldengine.sandbox.compiled import MAX_SOURCE
from ldengine.serve import serve_command
from ldengine.traces import plot_game
from ldengine.version import __version__


class _Group(click.Group):
    """Turns an ``LDEngineError`` anywhere below into a one-line ``ClickException``."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LDEngineError as exc:
            raise click.ClickException(str(exc)) from None


_REGISTRY = None


def registry():
    """The plugin registry, loaded once per process."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry.load()
    return _REGISTRY


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Show the libraries' warnings (torch, transformers: deprecations "
              "and the like), hidden by default.")
@click.version_option(__version__, prog_name="ldengine")
def cli(verbose):
    """Logic Distillation: small models select sandboxed functions from a teacher's function base."""
    if not verbose:
        _quiet_libraries()


def _quiet_libraries() -> None:
    """Hide warnings written for the libraries' developers (deprecations in torch, transformers,
    peft): nothing in them is for the person at the keyboard. Set before those libraries are
    imported, which happens only inside commands."""
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", category=UserWarning,
                            module=r"(torch|transformers|peft|huggingface_hub|accelerate|safetensors)(\.|$)")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _student_source(ctx, param, value):
    """A model path that exists, or an openai: address (then the backend is ``openai``)."""
    if value is None or Path(value).exists():
        return value
    if value.startswith(("openai:", "http://", "https://")):
        return value
    raise click.BadParameter(f"{value} does not exist (a .gguf file, a model folder or openai:URL#MODEL)")


def _backend(student: str | None, backend: str) -> str:
    """``--student openai:...`` picks the openai backend unless one was named."""
    if student and student.startswith(("openai:", "http://", "https://")) and backend == "transformers":
        return "openai"
    return backend


def _dtype_option(command):
    return click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto",
                        show_default=True,
                        help="Student weights' type. auto: bfloat16 where the CPU computes it natively "
                             "(AVX-512-BF16, AMX) or on a GPU, else float32. A selection then costs about 60% "
                             "(same choices on the held-out selections, benchmarks/RESULTS.md); results "
                             "record the type used.")(command)


def _device_option(command):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                        help="Where the student runs. auto: the GPU when torch sees one, else the CPU.")(command)


def _function_base_option(command):
    return click.option("--function-base", metavar="VERSION",
                        help="A stored function base version (ldengine functions versions) instead of the "
                             "plugins' modules.")(command)


TASK_HELP = "The task (ldengine plugins lists them)."
TASK_DEFAULT = " [default: the first task registered, pursuit]"
EVADER_HELP = "Evader policy (ldengine plugins lists them). [default: the task's own (pursuit: greedy)]"


def _default_task() -> str:
    """--task when not given: the first task registered (the built-ins register first, pursuit
    before twentyone), as ``Registry.default_task`` says."""
    return registry().default_task()


def _task_option(help: str = TASK_HELP):
    """--task, defaulting to the first task registered."""
    return click.option("--task", default=_default_task, help=help + TASK_DEFAULT)


def _emergency_options(command):
    """--emergency, --emergency-seed, --attempts and --read, shared by run and eval."""
    command = _read_option(command)
    command = click.option("--attempts", default=8, show_default=True, type=click.IntRange(1, 64),
                           help="Functions the student may write for the emergency before giving up.")(command)
    command = click.option("--emergency-seed", type=click.IntRange(0),
                           help="Draws a registered emergency's parameters (default: --seed).")(command)
    return click.option("--emergency", metavar="NAME",
                        help="Put a new rule in force: a registered kind (ldengine emergencies list, e.g. "
                             "restricted-area) or a stored function's rule with its parameters (ldengine "
                             "emergencies stored, e.g. a rule of your own, custom-1a2b3c4d).")(command)


def _read_option(command):
    return click.option("--read", "by_reading", is_flag=True,
                        help="ld agents: read the new rule's words into the task's rule language (the reading "
                             "adapter) and compile the program, instead of having the student write Python; each "
                             "reading, best first, counts as one of --attempts.")(command)


def _check_emergency_seed(emergency: str | None, emergency_seed: int | None, by_reading: bool = False) -> None:
    if emergency_seed is not None and not emergency:
        raise click.UsageError("--emergency-seed draws an emergency's parameters: name the rule with --emergency")
    if by_reading and not emergency:
        raise click.UsageError("--read reads a new rule's words: name the rule with --emergency")


@cli.command()
@click.argument("task")
@click.option("--agent", default="ld", show_default=True, help="Agent that plays the pursuers (ldengine plugins lists them).")
@click.option("--games", "--hands", "games", default=1, show_default=True, type=click.IntRange(1, 100_000),
              help="Number of games (hands, in twentyone).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Game i uses seed SEED+i.")
@click.option("--evader", help=EVADER_HELP)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), help="Write the summary as JSON.")
@click.option("--trace", type=click.Path(dir_okay=False, writable=True), help="Write a JSON Lines trace.")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), help="Draw the first game's trajectories (PNG).")
@click.option("--audit", type=click.Path(dir_okay=False, writable=True), help="Log every sandbox call as JSON Lines.")
@click.option("--student", callback=_student_source, help="Student model: a .gguf file, a local HF model folder, "
              "or openai:http://HOST:PORT/v1#MODEL (a server such as `ldengine serve`; implies --backend openai).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False), help="LoRA adapter folder (default: the committed one for this base).")
@click.option("--backend", default="transformers", show_default=True, help="Student backend (ldengine plugins lists them).")
@click.option("-k", "k", type=click.IntRange(1, 20), default=5, show_default=True, help="Retriever top-K.")
@click.option("--batch", type=click.IntRange(1, 256),
              help="Games played side by side, each stage's selections scored together "
                   "[default: 1 for the loop agents (ld, expert...), 16 for the text agents].")
@click.option("--no-memo", is_flag=True,
              help="ld agents: score every selection with the model, even a prompt seen before (same choices; "
                   "for timing).")
@click.option("--no-conditions", is_flag=True,
              help="ld agents: offer every alternative of a stage instead of the one its read When: condition "
                   "calls for (ldengine functions read); the student alone chooses among them (an ablation).")
@_emergency_options
@_dtype_option
@_device_option
@_function_base_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Overwrite the --json, --trace, --audit and --plot files if they exist.")
def run(task, agent, games, seed, evader, json_path, trace, plot, audit, student, adapter, backend, k,
        batch, no_memo, no_conditions, emergency, emergency_seed, attempts, by_reading, dtype, device, function_base,
        quiet, force):
    """Play GAMES seeded games of TASK and print a summary.

    With --emergency NAME a new rule is in force; the ld agent has the student
    write a function for it (verified in the isolated sandbox) or reuses a
    stored verified one.
    """
    reg = registry()
    _check_emergency_seed(emergency, emergency_seed, by_reading)
    _check_outputs({"--json": json_path, "--trace": trace, "--audit": audit}, plot, reg.get("tasks", task).obj,
                   force=force)
    evader = task_evader(reg.get("tasks", task).obj, evader)      # the task's own when not named
    options = {"student": student, "adapter": adapter, "backend": _backend(student, backend), "k": k,
               "attempts": attempts, "read": by_reading, "device": chosen_device(device), "no_memo": no_memo,
               "conditions": not no_conditions,
               "dtype": None if dtype == "float32" else dtype, "log": lambda line: click.echo(line, err=True)}
    cfg = RunConfig(task, agent, games, seed, evader, trace, audit, progress=not quiet, options=options,
                    emergency=emergency, emergency_seed=seed if emergency_seed is None else emergency_seed,
                    function_base=function_base, batch=batch)
    outcome = run_games(reg, cfg)
    runlog.append("run", _this_command(task, evader=evader), outcome.summary, interrupted=outcome.interrupted or None)
    click.echo(format_summary(outcome.summary, reg.get("tasks", task).obj))
    if json_path:
        Path(json_path).write_text(json.dumps(outcome.summary, indent=2) + "\n", encoding="utf-8")
    if plot and outcome.results:
        reg.get("tasks", task).obj.plot(outcome.results[0], plot, agent + (f" vs {evader} evader" if evader else ""))
        click.echo(f"plot: {plot}")
    if outcome.interrupted:
        raise click.ClickException(f"interrupted after {len(outcome.results)} game(s); "
                                   "the summary and trace cover those")


def _this_command(task: str, **effective: Any) -> str:
    """The running command with TASK and every effective option spelled out (to replay it);
    ``effective`` gives the value an option took where it differs from what was parsed (the
    task's own evader for no --evader)."""
    ctx = click.get_current_context()
    params = {**ctx.params, **effective}
    return command_line(ctx.command_path, [task], [(p.opts[0], params[p.name]) for p in ctx.command.params
                                                  if p.name != "task" and p.name in params])


def _check_outputs(files: dict, plot: str | None = None, task: Any = None, folders: dict | None = None,
                   force: bool = True) -> None:
    """Every path a command will write (option -> path), checked before any game is played,
    so that a bad one costs one line instead of the games; ``plot`` also needs a task that draws.
    Without ``force`` a file that exists with something in it is refused, not overwritten."""
    if plot and task is not None and not callable(getattr(task, "plot", None)):
        raise click.ClickException(f"--plot: plots are not available for {task.name}")
    for option, path in [*files.items(), ("--plot", plot)]:
        if path and not force and Path(path).is_file() and Path(path).stat().st_size:
            raise click.ClickException(f"{option} {path} already exists: pass --force to overwrite it, or give "
                                       "another name")
    for option, path in files.items():
        if path:
            outputs.check_file(path, option)
    for option, path in (folders or {}).items():
        if path:
            outputs.check_folder(path, option)
    if plot:
        outputs.check_plot(plot)


def _setup_words(s: dict) -> str:
    """The header's account of what played: student (weights' type), adapter, function base, emergency."""
    words = ""
    if s.get("student"):
        words += f" | student {s['student']} ({s.get('dtype')}) | adapter {s.get('adapter') or 'none'}"
    if s.get("function_base_version"):
        words += f" | base {s['function_base_version']}"
    return words + (f" | emergency {s['emergency']}" if s.get("emergency") else "")


def format_summary(s: dict, task: Any = None) -> str:
    """The human summary of a run; a task with ``summary_lines(summary)`` words its own results."""
    games = s["games"]
    seeds = f"seeds {s['seed']}-{s['seed'] + games - 1}" if games else "no games"
    unit = getattr(task, "unit", "game")      # what one game is called: a hand in twentyone
    plural = unit if games == 1 else unit + "s"
    opponent = f" | evader {s['evader']}" if getattr(task, "uses_evader", True) and s.get("evader") else ""
    lines = [f"{s['task']} | agent {s['agent']}{opponent} | {games} {plural} ({seeds})" + _setup_words(s)]
    if callable(getattr(task, "summary_lines", None)):
        lines += task.summary_lines(s)
    else:
        avg = "-" if s["avg_steps_success"] is None else f"{s['avg_steps_success']:.2f}"
        lines += [f"success {s['success']:.3f}  failure without violation {s['failure_without_violation']:.3f}"
                  f"  failure with violation {s['failure_with_violation']:.3f}",
                  f"average steps of success {avg}  violations {s['violations']}"]
    if s.get("selection_accuracy") is not None:
        lines[-1] += f"  selection accuracy {s['selection_accuracy']:.3f}"
    if s.get("distinct_prompts") is not None:
        lines[-1] += f"  selection prompts {s['distinct_prompts']} distinct, {s['model_calls']} model calls"
    rate = games / s["wall_s"] if s["wall_s"] else 0.0
    lines.append(f"wall {s['wall_s']:.2f} s ({rate:.3g} {unit}s/s)")
    return "\n".join(lines)


@cli.command(name="eval")
@click.argument("task")
@click.option("--agents", default="ld,kd,student,expert", show_default=True,
              help="Comma-separated agents; each plays the same seeded games.")
@click.option("--games", "--hands", "games", default=200, show_default=True, type=click.IntRange(1, 100_000),
              help="Games (hands, in twentyone) per agent.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Game i uses seed SEED+i.")
@click.option("--evader", help=EVADER_HELP)
@click.option("--out", default="results/eval", show_default=True, type=click.Path(file_okay=False),
              help="Output folder (run.json, games.jsonl, results.json, table.md, figures).")
@click.option("--resume", is_flag=True, help="Continue the run in OUT: play only the games it lacks.")
@click.option("--replay", metavar="AGENTS", help="With --resume: drop these agents' recorded games (comma-separated) "
              "and play them again, e.g. after retraining an adapter.")
@click.option("--start", help="Start of the trajectory figures: a named start (pursuit: 'paper', the "
              "paper's Figure 6) instead of game 0's.")
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures.")
@click.option("--batch", type=click.IntRange(1, 256),
              help="Games played side by side, each stage's selections (or answers) scored together "
                   "[default: 1 for the loop agents (ld, expert...), 16 for the text agents].")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes that play each agent's games, each loading the agent once (results are those "
                   "of one process; each worker takes about 1.2 GB with the student).")
@click.option("--student", callback=_student_source, help="Student model: a .gguf file, a local HF model folder, "
              "or openai:http://HOST:PORT/v1#MODEL (a server such as `ldengine serve`; implies --backend openai).")
@click.option("--adapter", "adapters", multiple=True, metavar="AGENT=DIR",
              help="LoRA adapter for one agent, e.g. kd=path/to/adapter (default: the committed ones).")
@click.option("--backend", default="transformers", show_default=True, help="Student backend.")
@click.option("-k", "k", type=click.IntRange(1, 20), default=5, show_default=True, help="Retriever top-K (ld).")
@click.option("--teacher-url", help="OpenAI-compatible endpoint for the teacher agent, e.g. http://localhost:8000/v1.")
@click.option("--teacher-model", help="Model name at the teacher endpoint.")
@click.option("--teacher-key-env", default="LDENGINE_TEACHER_KEY", show_default=True,
              help="Environment variable holding the teacher's API key.")
@_emergency_options
@_dtype_option
@_device_option
@_function_base_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_cmd(task, agents, games, seed, evader, out, resume, replay, start, no_figures, batch, workers, student,
             adapters, backend, k, teacher_url, teacher_model, teacher_key_env, emergency, emergency_seed, attempts,
             by_reading, dtype, device, function_base, quiet):
    """Every agent plays the same GAMES seeded games of TASK; write Table 1, results and figures.

    Results go to OUT game by game; after Ctrl-C or a crash, the same command
    with --resume plays only the missing games.
    """
    names = [a.strip() for a in agents.split(",") if a.strip()]
    if not names:
        raise click.BadParameter("name at least one agent", param_hint="--agents")
    again = [a.strip() for a in (replay or "").split(",") if a.strip()]
    if again and not resume:
        raise click.BadParameter("replaying agents continues a run: add --resume", param_hint="--replay")
    if set(again) - set(names):
        raise click.BadParameter(f"{', '.join(sorted(set(again) - set(names)))} not in --agents",
                                 param_hint="--replay")
    evader = task_evader(registry().get("tasks", task).obj, evader)      # the task's own when not named
    _check_emergency_seed(emergency, emergency_seed, by_reading)
    _check_outputs({}, folders={"--out": out})
    options = {"student": student, "backend": _backend(student, backend), "k": k, "teacher_url": teacher_url,
               "teacher_model": teacher_model, "teacher_key_env": teacher_key_env, "attempts": attempts,
               "read": by_reading,
               "device": chosen_device(device), "dtype": None if dtype == "float32" else dtype, "log": click.echo}
    cfg = EvalConfig(task, list(dict.fromkeys(names)), games, seed, evader, out, resume, start,
                     not no_figures, not quiet, batch, options, _adapters(adapters),
                     _this_command(task, evader=evader), emergency,
                     seed if emergency_seed is None else emergency_seed, again, function_base=function_base,
                     workers=workers)
    try:
        evaluate(registry(), cfg, log=click.echo)
        runlog.append("eval", cfg.command, {"games": games}, agents=cfg.agents, out=out)
    except KeyboardInterrupt:
        runlog.append("eval", cfg.command, {"games": games}, agents=cfg.agents, out=out, interrupted=True)
        if (Path(out) / "run.json").exists():
            run = json.loads((Path(out) / "run.json").read_text(encoding="utf-8"))
            write_results(registry(), Path(out), run)
        raise click.ClickException(f"interrupted; finished games are in {out}/games.jsonl and the "
                                   "partial table in table.md; run the same command with --resume") from None
    click.echo((Path(out) / "table.md").read_text(encoding="utf-8"))
    click.echo(f"results: {out}/results.json, games: {out}/games.jsonl")


def _adapters(pairs) -> dict:
    table = {}
    for pair in pairs:
        agent, sep, path = pair.partition("=")
        if not sep or not agent or not path:
            raise click.BadParameter(f"{pair!r} is not AGENT=DIR", param_hint="--adapter")
        if not Path(path).is_dir():
            raise click.BadParameter(f"{path!r} is not a folder", param_hint="--adapter")
        table[agent] = path
    return table


@cli.command(name="plot")
@click.argument("trace")
@click.option("--game", default=0, show_default=True, type=click.IntRange(0), help="The game to draw.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True),
              help="PNG file [default: TRACE's name with -gameN.png].")
def plot_cmd(trace, game, out):
    """Draw one game of a saved trace (ldengine run TASK --trace FILE): the pieces' trails,
    start and end."""
    if Path(trace).is_dir():
        raise click.BadParameter(f"{trace} is a folder, not a trace file (write one with ldengine run TASK "
                                 "--trace FILE)", param_hint="TRACE")
    out = out or str(Path(trace).with_suffix("")) + f"-game{game}.png"
    check_plot(out, "--out")
    plot_game(registry(), trace, game, out)
    click.echo(f"plot: {out}")


_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")


@cli.command(name="plugins")
@_JSON
def plugins_cmd(as_json):
    """List loaded plugins, where they came from, and what they registered."""
    reg = registry()
    plugins = [{"name": i.name, "origin": i.origin, "error": i.error, "hooks": i.hooks} for i in reg.plugins]
    items, warnings = _registered(reg), [f"{task}: {line}" for task in reg.tasks for line in _unplayed(reg, task)]
    if as_json:
        click.echo(json.dumps({"plugins": plugins, "registered": items, "warnings": warnings}, indent=2))
        return
    for line in _aligned([(p["name"], p["origin"], f"BROKEN: {p['error']}" if p["error"] else ", ".join(p["hooks"]))
                          for p in plugins]):
        click.echo(line)
    for line in _aligned([(i["kind"], i["name"], f"from {i['plugin']}", i["description"]) for i in items]):
        click.echo("  " + line)
    for line in warnings:
        click.echo(f"  warning {line}")


def _registered(reg) -> list[dict]:
    """Everything the plugins registered, one dict each (kind, name, plugin, description)."""
    rows = [{"kind": kind[:-1], "name": item.name, "plugin": item.plugin, "description": item.description}
            for kind in ("tasks", "evaders", "agents", "students") for item in getattr(reg, kind).values()]
    rows += [{"kind": "emergency", "name": item.name, "plugin": item.plugin,
              "description": f"({item.obj.split}) {item.description}"} for item in reg.emergencies.values()]
    return rows + [{"kind": "module", "name": mod.filename, "plugin": mod.plugin, "description": f"task {mod.task}"}
                   for mod in reg.modules]


def _aligned(rows: list[tuple]) -> list[str]:
    """Rows of words with every column but the last as wide as its widest word."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)] if rows else []
    return ["  ".join([word.ljust(width) for word, width in zip(row, widths)] + [row[-1]]) for row in rows]


def _unplayed(reg, task: str, base=None) -> list[str]:
    """Functions no agent will ever play (a stage outside the task's pipeline from another
    plugin, or a stage with two defaults); the task's own distractors are not reported."""
    try:
        base = base or _base(task)
    except LDEngineError as exc:
        return [f"its function base does not build: {exc}"]
    item = reg.tasks[task]
    return base.problems(list(item.obj.pipeline), own={item.plugin})


@cli.group(cls=_Group)
def functions():
    """Read the function base's manual."""


def _base(task: str, version: str | None = None):
    reg = registry()
    reg.get("tasks", task)
    return base_for(reg, task, version)


@functions.command(name="list")
@_task_option()
@click.option("--version", "version", metavar="VERSION", help="A stored version (ldengine functions versions) "
              "instead of the plugins' modules.")
@_JSON
def functions_list(task, version, as_json):
    """One line per function: name, stage, version (module version + content hash), summary; then one
    per fact a stage's query states (its sentence, answered yes or no)."""
    base = _base(task, version)
    warnings = _unplayed(registry(), task, base)
    if as_json:
        functions = [{"name": e.name, "stage": e.stage, "version": e.version, "summary": e.summary, "when": e.when,
                      "module": e.module, "plugin": e.plugin, "sha256": e.source_hash} for e in base.entries.values()]
        facts = [{"name": f.name, "stage": f.stage, "sentence": f.sentence, "module": f.module, "plugin": f.plugin}
                 for f in base.facts.values()]
        click.echo(json.dumps({"task": task, "version": version or "plugins", "base_hash": base.hash,
                               "functions": functions, "facts": facts, "warnings": warnings}, indent=2))
        return
    for e in base.entries.values():
        click.echo(f"{e.name:<28} {e.stage:<18} {e.version:<16} {e.summary}"
                   + (f" [when: {e.when}]" if e.when else ""))
    for f in base.facts.values():
        click.echo(f"fact {f.name:<23} {f.stage:<18} {'':<16} \"{f.sentence}: yes/no\" ({f.plugin})")
    click.echo(f"{len(base)} functions, {len(base.facts)} facts, base hash {base.hash[:12]}")
    for line in warnings:
        click.echo(f"warning: {line}")


@functions.command(name="read")
@_task_option()
@click.option("--version", "version", metavar="VERSION", help="A stored version (ldengine functions versions) "
              "instead of the plugins' modules.")
@click.option("--proposer", type=click.Choice(sorted(PROPOSERS)), default="encoder", show_default=True,
              help="What ranks the conditions a When: text may say before the check: the retriever's sentence "
                   "encoder, or word overlap (no model).")
@_JSON
def functions_read(task, version, proposer, as_json):
    """Each alternative's When: field read into a condition over its stage's facts, checked against its
    when_ predicate on the expert's games (open board and every registered rule change).

    The ld agent offers, at a stage with alternatives, only the one whose condition the state calls
    for (the first that holds, else the default); an alternative whose words and code disagree stays
    unread and is always offered. Readings are cached (ldengine cache info); the first costs ~20 s.
    """
    reg = registry()
    task_obj = reg.get("tasks", task).obj
    base = base_for(reg, task, version)
    readings = Readings(AgentContext(task_obj, base, {}, reg), PROPOSERS[proposer](),
                        log=lambda line: click.echo(line, err=True))
    stages = [stage for stage in task_obj.pipeline if len(base.for_stage(stage)) > 1]
    found = {stage: readings.stage(stage) for stage in stages}
    if as_json:
        click.echo(json.dumps({"task": task, "base_hash": base.hash, "proposer": proposer,
                               "readings": [vars(r) for stage in found.values() for r in stage.values()]}, indent=2))
        return
    unread = 0
    for stage, read in found.items():
        facts = {f.name: f for f in base.facts_for(stage)}
        click.echo(f"{stage}: facts {', '.join(facts) or 'none'}")
        for e in base.for_stage(stage):
            r = read.get(e.name)
            if r is None:
                click.echo(f"  {e.name:<26} default: played when no alternative's condition holds")
            elif r.read:
                click.echo(f"  {e.name:<26} {r.condition}  (checked on {r.states} states; the words ranked it "
                           f"{r.rank + 1 if r.rank is not None else '-'}, their first guess: {r.first})")
            else:
                unread += 1
                why = (f"no condition over the facts agrees with {e.predicate} (best: {r.example.get('condition')}, "
                       f"{r.agree}/{r.states} states; e.g. facts {r.example.get('facts')} but the code says "
                       f"{r.example.get('code_says')})" if r.status == "disagrees" else r.status)
                click.echo(f"  {e.name:<26} UNREAD: {why}; it is always offered. Declare the fact its When: "
                           "depends on (docs/plugins.md: Add a function as a plugin)")
    if not stages:
        click.echo(f"{task} has no stage with alternatives: nothing to read")
    total = sum(len(r) for r in found.values())
    click.echo(f"{total} When: fields, {total - unread} read, {unread} unread (proposer {proposer})")


@functions.command(name="versions")
@_task_option()
def functions_versions(task):
    """The stored function base versions of TASK (from ldengine distill), with their provenance."""
    registry().get("tasks", task)
    lines = version_lines(task)
    for line in lines:
        click.echo(line)
    click.echo(f"{len(lines)} stored version(s) in {versions_dir(task)}")


@functions.command(name="show")
@click.argument("name")
@_task_option()
def functions_show(name, task):
    """The full manual entry of NAME, with its version and source hash: a function of the
    base, or a stored generated one (ldengine emergencies stored)."""
    base = _base(task)
    stored = None if name in base.entries else gen.find_function(registry(), name, task)
    if stored is None:
        e = base.entry(name)
        click.echo(f"{e.name}  (version {e.version}, sha256 {e.source_hash}, {e.module}, plugin {e.plugin})\n")
    else:
        item, e = stored
        click.echo(f"{e.name}  (stored {item.what} function {item.name}, version {e.version}, sha256 "
                   f"{e.source_hash}: {item.summary()})\n")
        if item.provenance.get("program"):
            click.echo(f"read as: {item.provenance['program']}\n  in words: {item.provenance.get('english', '')}\n")
    click.echo(e.docstring)


@cli.command()
@click.argument("query")
@_task_option()
@click.option("-k", "k", type=click.IntRange(1, 50), default=5, show_default=True,
              help="How many manual entries to show, best first.")
@click.option("--only-task", is_flag=True, help="Search TASK's functions alone, not the index shared by every task.")
def retrieve(query, task, k, only_task):
    """Show the top-K manual entries the dense retriever returns for QUERY.

    The agents search one index over every task's functions; another task's
    function shows as task:name."""
    if not query.strip():
        raise click.BadParameter("an empty query matches nothing in particular: give the words to search for",
                                 param_hint="QUERY")
    base = _base(task)
    found = Retriever.for_base(base) if only_task else Retriever.for_library(base, registry())
    for rank, (name, score) in enumerate(found.search(query, k), 1):
        e = found.entry(name)
        click.echo(f"{rank}. {score:.3f}  {name:<28} {e.stage:<18} {e.summary}")


@cli.command()
@_task_option(help="The task; for --method ld several, comma-separated (pursuit,twentyone): one adapter "
                   "learns every one's manual and is saved under function_base/adapters/.")
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
    --method kd teaches it to write the expert's move for each pursuer;
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
    check_promotable(cfg)
    default = shared_adapter_dir() if len(cfg.tasks) > 1 else default_adapter_dir(cfg.task)
    _check_outputs({}, folders={"--out": cfg.out} if cfg.out else {"adapter folder": default})


def _adapter_use(manifest: dict, cfg) -> None:
    """How the new adapter is used: by default (--promote), or where asked."""
    if cfg.promote:
        click.echo(f"promoted: {Path(manifest['path']).name} is now the default adapter for {cfg.task}")
    else:
        click.echo(f"not the default adapter (train with --promote for that); use it with --adapter {manifest['path']}")


@cli.command()
@click.argument("text")
@_task_option()
@click.option("--param", "params", multiple=True, metavar="K=V",
              help="A parameter of the rule (repeatable); {K} in TEXT is replaced by its value.")
@click.option("--kind", help="A registered emergency kind whose rule the text describes: examples are derived "
              "from it and PARAMS (default: the kind whose parameter names match PARAMS, if exactly one).")
@click.option("--allow", multiple=True, metavar="X,Y|PX,PY>X,Y", help="A move the rule allows (repeatable).")
@click.option("--forbid", multiple=True, metavar="X,Y|PX,PY>X,Y", help="A move the rule forbids (repeatable).")
@click.option("--attempts", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Functions the student may write for the rule before giving up.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Sampling and case seed.")
@click.option("--student", type=click.Path(exists=True), help="Student model (default: SmolLM2-135M-Instruct GGUF).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False),
              help="LoRA adapter for writing (default: the committed writing adapter, if any).")
@click.option("--no-store", is_flag=True, help="Verify only; do not add the function to function_base/.")
@click.option("--yes", "-y", is_flag=True,
              help="Store the first function that passes without asking (for scripts); its board map is still shown.")
@click.option("--png", type=click.Path(dir_okay=False),
              help="Also draw each shown board map as a PNG: FILE for the first, FILE-attemptN.png beside it "
                   "for each later one.")
@click.option("--read", "by_reading", is_flag=True,
              help="Read the words into the task's rule language (the reading adapter, `finetune --method read`) "
              "and compile the program, instead of having the student write Python.")
def emergency(text, task, params, kind, allow, forbid, attempts, seed, student, adapter, no_store, yes, png,
              by_reading):
    """A new rule in words: the student writes a function for it, the isolated sandbox
    verifies it, its board map shows what it forbids, and one you confirm is stored (with
    provenance) in the function base.

    \b
    ldengine emergency "Pursuers may not enter column 10"
    ldengine emergency "Pursuers may not enter column 10" --forbid 10,5 --allow 9,5
    ldengine emergency "Lava: no piece may enter a cell (x, y) with {x0} <= x <= {x1} \\
        and {y0} <= y <= {y1}." --param x0=4 --param y0=10 --param x1=8 --param y1=14

    With the words alone, each function that runs correctly on every move of the board is
    shown as a map for you to judge; examples (--allow/--forbid) or a known kind's rule
    (--param, --kind) check it first. The moves of the map you confirm become the rule's
    examples: the referee judges them in games.
    """
    check_rule_text(text)        # before any model loads (a rule over several pieces is refused here)
    reg = registry()
    task_obj = reg.get("tasks", task).obj
    _check_examples(allow, forbid)
    if by_reading and (params or kind):
        raise click.UsageError("--read takes the rule from its words (and --allow/--forbid examples); "
                               "--param and --kind are for writing")
    values = _params(params)
    if not by_reading:
        _check_placeholders(text, values, kind)
    if not (yes or no_store):
        _need_answer("pass --yes to store without asking (with --allow/--forbid examples that check it), or "
                     "--no-store to only see the functions")
    if by_reading:
        _emergency_by_reading(reg, task, text, allow, forbid, seed, student, adapter, no_store, yes)
        return
    rule = _rule(reg, task_obj, text, values, kind, allow, forbid)
    cases = rule.cases(values, seed)
    if not cases:
        raise click.ClickException("no example can be checked: give --allow/--forbid moves that are legal "
                                   "under the old rules, or --kind/--param to derive examples")
    click.echo(f"rule: {rule.describe(values)}")
    words_only = getattr(rule, "examples_given", True) is False
    click.echo("no examples: each function is checked on every move of the board for its form, then its map is "
               f"yours to judge; up to {attempts} attempts" if words_only
               else f"checking against {len(cases)} examples; up to {attempts} attempts")
    context = AgentContext(task_obj, FunctionBase.build(task, reg.modules_for(task)),
                           {"student": student, "writer_adapter": adapter}, reg)
    writer_adapter = writing_adapter(context)
    writer, form = context.load_student(adapter=writer_adapter), writing_form(writer_adapter)
    click.echo(f"writing with {writer.name} (the first attempt greedy, then 4 at a time sampled"
               + ("; it writes the allowed-move condition, the engine the rest)" if form == "condition" else ")"))

    def show(attempt):
        click.echo(f"attempt {attempt.number} (temperature {attempt.temperature}, {attempt.seconds:.1f} s): "
                   f"{attempt.check.line()}")
        click.echo("".join("    | " + line + "\n" for line in attempt.source.splitlines()[-6:]))
    ask = None if (yes or no_store) else _confirm_map
    judge = BoardJudge(rule.function_name(), cases[0][0], click.echo, ask, png,
                       (getattr(rule, "allowed", ()), getattr(rule, "forbidden", ())), rule.describe(values))
    written = write_function(rule, values, writer, worked_examples(reg, task, form=form), attempts, seed, cases,
                             report=show, accept=judge, form=form)
    if not written.passed:
        refused = sum(a.refused is not None for a in written.attempts)
        raise click.ClickException(f"no function passed verification in {attempts} attempts"
                                   + (f" ({refused} passed it but were refused on their board map)" if refused else ""))
    if hasattr(rule, "confirmed") and judge.board is not None and getattr(rule, "like", None) is None:
        check = confirm(written, rule, values, judge.board, seed,
                        "the user, on the function's board map" if ask else "--yes: stored without asking")
        if not check.passed:
            raise click.ClickException(f"the function fails against the moves of its own map: {check.line()}")
        click.echo(f"the rule now has the map's {len(judge.board.forbidden_moves):,} forbidden moves as examples "
                   f"(checked again: {check.line()})")
    if no_store:
        click.echo(f"passed at attempt {written.attempts_to_pass} (not stored)")
        return
    path = save(written)
    click.echo(f"passed at attempt {written.attempts_to_pass}; stored {path} (+ .json provenance)")


def _emergency_by_reading(reg, task, text, allow, forbid, seed, student, adapter, no_store, yes) -> None:
    """``ldengine emergency TEXT --read``: the readings of TEXT, the one the examples agree with
    (and, with --yes, the only one), compiled, verified in the worker, stored with its program."""
    language = _rule_language(reg, task, text)
    allowed, forbidden = _moves(allow, "--allow"), _moves(forbid, "--forbid")
    game = reg.get("tasks", task).obj
    if (allowed or forbidden) and hasattr(game, "custom_emergency"):
        # the task says what a bare cell means as a move (pursuit: entering it from a neighbour)
        examples = game.custom_emergency(text, {}, allowed, forbidden)
        allowed, forbidden = list(examples.allowed), list(examples.forbidden)
    if yes and not (allowed and forbidden):
        # measured (benchmarks/RESULTS.md): readings all answers agreed on were still wrong for 2 of
        # 10 unseen rules, so nothing read is stored unseen without examples that check it
        raise click.UsageError("--read --yes needs at least one --allow and one --forbid example to check the "
                               "reading against; without them, leave out --yes and judge the map")
    _, reader, readings = _read_rule(reg, language, text, student, adapter, MARGIN)
    _echo_readings(readings, language, picture=False, scored=reader is not None)
    chosen, why = compile_reading(language, readings, text, allowed, forbidden, unanimous=yes, student=reader)
    if chosen is None:
        raise click.ClickException(refusal_line(why, language))
    click.echo(f"the rule: {chosen.reading.english}")
    click.echo(language.picture(chosen.reading.program))
    if not (yes or no_store) and not _confirm_map():
        raise click.ClickException("not stored")
    written = chosen.verified(seed)
    if not written.passed:
        raise click.ClickException(f"the compiled function fails verification: {written.attempts[-1].check.line()}")
    click.echo(f"compiled and verified in the isolated worker: {written.attempts[-1].check.line()}")
    if no_store:
        click.echo("not stored (--no-store)")
        return
    path = save(written)
    click.echo(f"stored {path} (+ .json provenance with the program); play it: ldengine run {task} "
               f"--emergency {path.stem}")


def _answerable() -> bool:
    """Can a question be answered? Not when stdin is closed or a character device that is no
    terminal (``< /dev/null``, a service); a pipe or a terminal can answer."""
    try:
        fd = sys.stdin.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return True         # a stream of a program of its own (a test's): it may hold the answer
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    return os.isatty(fd) or not stat.S_ISCHR(info.st_mode)


def _need_answer(hint: str) -> None:
    """Refuse in one line, before any work, a command that will ask a question nobody can answer."""
    if not _answerable():
        raise click.ClickException(f"this asks for confirmation, and there is no terminal to answer it: {hint}")


def _confirm_map() -> bool:
    """Asks whether the map shown is the rule; with no answer to read (no terminal) it stops."""
    try:
        return click.confirm("Is this the rule? Store this function", default=False)
    except click.Abort:
        raise click.ClickException("no answer to read (no terminal?): pass --yes to store the first function "
                                   "that passes, or --no-store to only see them") from None


@cli.group(cls=_Group)
def emergencies():
    """The emergency kinds (new rules) and how well the student writes functions for them."""


@emergencies.command(name="list")
@_task_option()
@_JSON
def emergencies_list(task, as_json):
    """Each kind: whether it is evaluated (held out of the writing fine-tune) or for training, and its rule."""
    registry().get("tasks", task)
    kinds = [item for item in registry().emergencies.values() if item.obj.task == task]
    if as_json:
        click.echo(json.dumps([{"name": i.name, "task": task, "split": i.obj.split, "plugin": i.plugin,
                                "params": sorted(i.obj.params(0)), "rule": i.obj.describe(i.obj.params(0))}
                               for i in kinds], indent=2))
        return
    for item in kinds:
        kind = item.obj
        names = ", ".join(sorted(kind.params(0))) or "-"
        click.echo(f"{kind.name:<18} {kind.split:<6} params {names:<17} {kind.describe(kind.params(0))}")
    if kinds:
        click.echo("(the rule as seed 0 draws its params; --emergency-seed draws others, and "
                   "ldengine emergency TEXT --param K=V fills your own)")
    else:
        click.echo(f"task {task} has no emergency kinds")


@emergencies.command(name="stored")
@click.option("--task", help="Only this task's stored functions (default: every task's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def emergencies_stored(task, as_json):
    """The stored functions written for emergencies (ldengine generated list, functions only):
    each plays with ldengine run TASK --emergency NAME, its rule and parameters in force."""
    items = [i for i in gen.stored(registry(), _generated_task(task)) if i.what == gen.EMERGENCY]
    if as_json:
        click.echo(json.dumps([item.record() for item in items], indent=2))
        return
    for item in items:
        rule = item.provenance.get("custom_rule") or {}
        judged = " (the referee knows only its examples)" if rule and not rule.get("like") else ""
        status = "ok" if item.problem is None else "CHANGED"
        click.echo(f"{item.name:<28} {item.task:<10} {status:<8} {item.summary()}{judged}")
    shipped = sum(gen.shipped(item.path) for item in items)
    click.echo(f"{len(items)} stored" + (f" ({shipped} ship with the package)" if shipped else "")
               + " (play one: ldengine run TASK --emergency NAME)")


@emergencies.command(name="measure")
@_task_option()
@click.option("--kinds", default="eval", show_default=True,
              help="Comma-separated kind names, or 'eval' (the held-out kinds) or 'all'.")
@click.option("--seeds", default=10, show_default=True, type=click.IntRange(1, 10_000),
              help="Parameter seeds per kind for the writing pass rate.")
@click.option("--attempts", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Functions the student may write for the rule before giving up.")
@click.option("--games", default=50, show_default=True, type=click.IntRange(1, 100_000),
              help="Games per agent (ld, expert) with each kind in force.")
@click.option("--out", default="results/emergencies", show_default=True, type=click.Path(file_okay=False),
              help="Folder for each kind's games, results.json and the table (table.md).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Game i uses seed SEED+i.")
@click.option("--emergency-seed", default=0, show_default=True, type=click.IntRange(0),
              help="Draws each kind's parameters for the games (the pass rate uses seeds 100 and up).")
@click.option("--student", type=click.Path(exists=True), help="Student model (default: SmolLM2-135M-Instruct GGUF).")
@_read_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
def emergencies_measure(task, kinds, seeds, attempts, games, out, seed, emergency_seed, student, by_reading, quiet):
    """Per kind: pass rate of the student's functions (attempts to first pass) and LD's success
    with the kind in force, against the expert that nobody adapted. Writes OUT/table.md.
    With --read the rule's words are read into the rule language and compiled instead."""
    reg = registry()
    reg.get("tasks", task)
    if kinds in ("eval", "all"):
        chosen = [r.obj for r in reg.emergencies.values() if r.obj.task == task
                  and (kinds == "all" or r.obj.split == "eval")]
    else:
        chosen = [reg.get("emergencies", name.strip()).obj for name in kinds.split(",") if name.strip()]
    _check_outputs({}, folders={"--out": out})
    options = {"student": student, "log": click.echo, "attempts": attempts, "read": by_reading}
    report = measure(reg, task, chosen, list(range(100, 100 + seeds)), attempts, games, Path(out), options,
                     click.echo, not quiet, seed=seed, emergency_seed=emergency_seed)
    click.echo(measure_table(report))


@cli.group(cls=_Group)
def generated():
    """Stored generated code: the student's emergency functions and the distilled versions.

    Each was stored with its provenance, which records the sha256 of every file;
    a file that no longer matches is refused wherever it would load."""


def _generated_task(task: str | None) -> str | None:
    if task:
        registry().get("tasks", task)
    return task


_GENERATED_TASK = click.option("--task", help="Only this task's stored code (default: every task's).")
_GENERATED_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")


@generated.command(name="list")
@_GENERATED_TASK
@_GENERATED_JSON
def generated_list(task, as_json):
    """One line per stored function or version: what, name, task, whether its files still
    have their recorded sha256 (ok / CHANGED), and what it is."""
    items = gen.stored(registry(), _generated_task(task))
    if as_json:
        click.echo(json.dumps([item.record() for item in items], indent=2))
        return
    for item in items:
        status = "ok" if item.problem is None else "CHANGED"
        click.echo(f"{item.what:<9} {item.name:<28} {item.task:<10} {status:<8} {item.summary()}")
    click.echo(f"{len(items)} stored (ldengine generated verify: check the hashes and verify them again)")


@generated.command(name="show")
@click.argument("name")
@_GENERATED_TASK
@_GENERATED_JSON
def generated_show(name, task, as_json):
    """NAME's files with their sha256, whether they still match the provenance, and its code."""
    item = gen.find(registry(), name, _generated_task(task))
    record = item.record()
    if as_json:
        click.echo(json.dumps({**record, "provenance": item.provenance}, indent=2))
        return
    click.echo(f"{item.what} {item.name} ({item.task}): {item.summary()}")
    vouched = ("it ships with the package" if gen.shipped(item.path)
               else "its provenance is signed with this machine's key")
    click.echo(f"status: ok, every file has the sha256 its provenance records and {vouched}" if item.problem is None
               else f"status: CHANGED: {item.problem}")
    for entry in record["files"]:
        click.echo(f"  {entry['file']:<24} sha256 {entry['sha256']}")
    if item.provenance.get("program"):
        click.echo(f"read as: {item.provenance['program']}\n  in words: {item.provenance.get('english', '')}")
    if item.what == gen.EMERGENCY and item.path.is_file():
        click.echo("\n" + item.path.read_text(encoding="utf-8", errors="replace"))
    else:
        for function in item.provenance.get("functions", []):
            click.echo(f"  {function.get('name', '?'):<28} {function.get('stage', '?'):<18} {function.get('version', '')}")


@generated.command(name="verify")
@click.argument("name", required=False)
@_GENERATED_TASK
@click.option("--games", type=click.IntRange(1, 1000),
              help="Versions: the expert's check games (default: as many as when it was distilled).")
@_GENERATED_JSON
def generated_verify(name, task, games, as_json):
    """Check the sha256 of every stored file (or NAME's) against its provenance, then verify
    the code again: an emergency function against its rule on every move of the board and
    fresh random states; a distilled version through the distill checks. Exit code 1 if any fails."""
    reg = registry()
    task = _generated_task(task)
    items = [gen.find(reg, name, task)] if name else gen.stored(reg, task)
    verdicts = [gen.verify(reg, item, games) for item in items]
    if as_json:
        click.echo(json.dumps([{"name": v.item.name, "what": v.item.what, "task": v.item.task, "passed": v.passed,
                                "lines": v.lines} for v in verdicts], indent=2))
    else:
        for v in verdicts:
            click.echo(f"{v.item.what} {v.item.name}: {'ok' if v.passed else 'FAILED'}: "
                       + "\n    ".join(v.lines))
    failed = [v.item.name for v in verdicts if not v.passed]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(verdicts)} failed: {', '.join(failed)}")
    if not as_json:
        click.echo(f"{len(verdicts)} verified")


@generated.command(name="remove")
@click.argument("name")
@_GENERATED_TASK
@click.option("--yes", is_flag=True, help="Remove without asking.")
def generated_remove(name, task, yes):
    """Delete NAME's stored files: a function and its provenance, or a version's folder."""
    item = gen.find(registry(), name, _generated_task(task))
    if not yes:
        _need_answer("pass --yes to remove without asking")
        click.confirm(f"remove the {item.what} {item.name} ({item.path})?", abort=True)
    removed = gen.remove(item)
    click.echo(f"removed {item.what} {item.name}: " + ", ".join(str(path) for path in removed))


def _params(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{pair!r} is not K=V", param_hint="--param")
        try:
            out[key] = int(value)
        except ValueError:
            out[key] = value
    return out


PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _check_placeholders(text: str, values: dict, kind: str | None) -> None:
    """Every {K} of the rule's words has a whole-number --param, and (unless --kind names the
    rule the parameters are for) every --param fills a {K}."""
    holes = list(dict.fromkeys(PLACEHOLDER.findall(text)))
    missing = [h for h in holes if h not in values]
    if missing:
        raise click.BadParameter(f"the rule's words have {', '.join('{' + h + '}' for h in missing)} and no "
                                 f"value for it: add --param {missing[0]}=N", param_hint="--param")
    wordy = [f"{h}={values[h]}" for h in holes if not isinstance(values[h], int)]
    if wordy:
        raise click.BadParameter(f"{', '.join(wordy)}: a rule's parameter is a whole number (a column, a row, a "
                                 "distance)", param_hint="--param")
    unused = [k for k in values if k not in holes]
    if holes and unused and not kind:
        raise click.BadParameter(f"{', '.join(unused)} is not a placeholder of the rule's words (they have "
                                 f"{', '.join('{' + h + '}' for h in holes)})", param_hint="--param")


def _check_examples(allow, forbid) -> None:
    """A move given both as allowed and as forbidden is refused before anything runs."""
    both = sorted(set(_moves(allow, "--allow")) & set(_moves(forbid, "--forbid")))
    if both:
        shown = ", ".join(">".join(",".join(map(str, side)) for side in (m if isinstance(m[0], tuple) else (m,)))
                          for m in both)
        raise click.UsageError(f"{shown} is given both with --allow and with --forbid: a move is one or the other")


def _moves(items, hint: str) -> list:
    out = []
    for item in items:
        try:
            parts = [tuple(int(v) for v in side.split(",")) for side in item.split(">")]
            if len(parts) > 2 or any(len(p) != 2 for p in parts):
                raise ValueError
        except ValueError:
            raise click.BadParameter(f"{item!r} is not X,Y or PX,PY>X,Y", param_hint=hint) from None
        out.append(parts[0] if len(parts) == 1 else tuple(parts))
    return out


def _rule(reg, task, text: str, values: dict, kind: str | None, allow, forbid):
    """The rule to check against: a registered kind (named, or matched by parameter names),
    else the user's own examples, else the words alone (the user judges each function's map)."""
    if not hasattr(task, "custom_emergency"):
        raise click.ClickException(f"task {task.name!r} takes no emergencies")
    allowed, forbidden = _moves(allow, "--allow"), _moves(forbid, "--forbid")
    if not kind and values and not (allowed or forbidden):
        matches = [r.name for r in reg.emergencies.values()
                   if r.obj.task == task.name and hasattr(r.obj, "draw")
                   and set(r.obj.params(0)) == set(values)]
        # several kinds may share parameter names: the one whose rule reads most like TEXT
        matches.sort(key=lambda name: -_word_overlap(text, reg.get("emergencies", name).obj.describe(values)))
        kind = matches[0] if matches else None
        if kind and _word_overlap(text, reg.get("emergencies", kind).obj.describe(values)) < MIN_WORD_OVERLAP:
            raise click.ClickException(
                f"the rule's words share almost nothing with the known rules that take "
                f"{', '.join(sorted(values))} (closest: {kind}, \"{reg.get('emergencies', kind).obj.describe(values)}\"); "
                f"to check the function against that rule anyway, name it with --kind {kind}; or give "
                "--allow/--forbid examples of your rule")
        if kind:
            click.echo(f"examples derived from the rule of {kind} (--kind to choose another)")
    if kind:
        base = reg.get("emergencies", kind).obj
        missing = set(base.params(0)) - set(values)
        if missing:
            raise click.BadParameter(f"{kind} needs --param for {', '.join(sorted(missing))}", param_hint="--param")
        return task.custom_emergency(text, values, like=base)
    return task.custom_emergency(text, values, allowed=allowed, forbidden=forbidden)


# Below this share of common words, a rule given with a known kind's --param names is not
# taken for that kind ("bananas are yellow" shares 0.0 with restricted-area's rule, the
# README's lava rule 0.43).
MIN_WORD_OVERLAP = 0.2


def _word_overlap(a: str, b: str) -> float:
    x, y = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    return len(x & y) / len(x | y) if x | y else 0.0


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


@cli.group(cls=_Group)
def rules():
    """Rules in words read into the task's rule language (programs, not Python)."""


@rules.command(name="read")
@click.argument("text")
@_task_option(help="The task whose rule language reads TEXT.")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False),
              help="The reading adapter (default: the newest promoted `finetune --method read` adapter of the task).")
@click.option("--margin", default=MARGIN, show_default=True, type=click.FloatRange(0, 50),
              help="Show the readings whose log-probability is within this of the best one.")
@click.option("--json", "as_json", is_flag=True, help="Print the readings as JSON.")
def rules_read(text, task, adapter, margin, as_json):
    """Read TEXT, a rule in words, into a program of the task's rule language: the language's
    frames and connectives split the words every way they can, the student reads each clause
    into one primitive, the parses are composed and grouped by the moves they forbid, best
    first, each in canonical English with its board map."""
    reg = registry()
    check_rule_text(text)
    language = _rule_language(reg, task, text)
    adapter, _, readings = _read_rule(reg, language, text, None, adapter, margin)
    if as_json:
        click.echo(json.dumps({"text": text, "adapter": str(adapter) if adapter else None,
                               "reader": "student" if adapter else "lexicon", "readings": [
            {"program": r.text, "english": r.english, "score": round(r.score, 4), "parses": r.votes,
             "refusal": r.refusal,
             "uses_every_number": r.uses_every_number, "unread": list(r.unread), "guessed": list(r.guessed),
             "programs": [program_text(p) for p in r.programs]}
            for r in readings]}, indent=2))
        return
    if not readings:
        click.echo("no reading: no way of splitting the words gave clauses the student reads as primitives")
        sys.exit(1)
    _echo_readings(readings, language, picture=True, scored=adapter is not None)
    if len(readings) > 1:
        click.echo(f"the answers disagree on what is forbidden ({len(readings)} readings)")


def _rule_language(reg, task: str, text: str) -> Any:
    """TASK's rule language, once TEXT is known to be sayable in it (before any model loads)."""
    reg.get("tasks", task)
    if task not in reg.rule_languages:
        raise click.UsageError(f"task {task!r} has no rule language to read rules into "
                               f"(known: {', '.join(reg.rule_languages) or 'none'})")
    language = reg.rule_languages[task].obj
    why = language.outside(text)
    if why:
        raise click.ClickException(f"cannot be read into the rule language: {why}; the language covers "
                                   f"{language.covers}")
    return language


def _read_rule(reg, language, text: str, student, adapter, margin: float) -> tuple:
    """(adapter, reader, readings): TEXT read by the reading adapter (default: the task's promoted one).
    With neither a student nor an adapter named, a text whose every clause the lexicon or its
    symbols read one way only, all parses agreeing, is read without loading the model
    (``read_without_model``: the student would read it the same); then adapter and reader are None."""
    if student is None and adapter is None:
        readings = read_without_model(language, text)
        if readings is not None:
            click.echo("read by the lexicon and the symbols alone (every clause one way, every parse agreeing): "
                       "the student is not loaded", err=True)
            return None, None, readings
    if adapter is None:
        task = language.task
        adapter = find_adapter(task, FunctionBase.build(task, reg.modules_for(task)), method="read")
    reader = load_student(student, adapter=adapter)
    namer = Namer(lambda: Encoder().encode, language)       # loaded only for words the reader does not know
    return adapter, reader, read(reader, language, text, margin=margin, namer=namer, near=getattr(reader, "near", 0))


def _echo_readings(readings: list, language, picture: bool, scored: bool = True) -> None:
    """Each reading: its program, its log-probability (``scored``: the student read it; else
    the lexicon alone did), its English, why it is refused; with ``picture``, the first usable
    one's board map."""
    for i, r in enumerate(readings):
        how = [f"log-probability {r.score:.2f}" if scored else "read by the lexicon"]
        how += [] if r.uses_every_number else ["leaves a number of the text unused"]
        click.echo(f"{'read as' if i == 0 else 'or'}: {r.text}  ({'; '.join(how)})")
        click.echo(f"  in words: {r.english}")
        if i == 0 and r.guessed:
            click.echo(f"  read by the student alone: {'; '.join(r.guessed)} (--yes stores no such reading)")
        if i == 0 and r.unread:
            click.echo(f"  words not read: {', '.join(r.unread)} (--yes stores no reading that left words unread)")
        if r.refusal:
            click.echo(f"  refused: {r.refusal}")
        if picture and i == 0 and not r.refusal:
            click.echo(language.picture(r.program))


@cli.group(cls=_Group)
def sandbox():
    """Run untrusted code in the isolated sandbox."""


@sandbox.command(name="run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--function", "name", required=True, help="Function to call.")
@click.option("--args", "args_json", default="[]", show_default=True, help="JSON list of arguments.")
@click.option("--timeout", default=2.0, show_default=True, type=click.FloatRange(0.05, 60), help="Wall-clock limit (s).")
@click.option("--memory-mb", default=256, show_default=True, type=click.IntRange(16, 8192), help="Memory limit (MB).")
def sandbox_run(file, name, args_json, timeout, memory_mb):
    """Run FUNCTION of FILE with ARGS in an isolated worker; print its result or error."""
    args = _json_args(args_json)
    source = _source_file(Path(file))
    module = compile_module(source, filename=Path(file).name, load=False)  # loads only in the worker
    limits = Limits(wall_s=timeout, cpu_s=timeout, memory_mb=memory_mb)
    with IsolatedSandbox(limits) as box:
        result = box.call(module, name, *args)
    if result.ok:
        click.echo(json.dumps(result.value))
        click.echo(f"ok in {result.duration * 1000:.1f} ms", err=True)
    else:
        click.echo(f"Error: {result.error}", err=True)
        sys.exit(1)


def _source_file(path: Path) -> str:
    """A module's text, from a regular file of at most ``MAX_SOURCE`` characters (not a
    device, a FIFO or a socket, whose reading never ends)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="FILE") from None
    if not stat.S_ISREG(info.st_mode):
        raise click.BadParameter(f"{path} is not a regular file", param_hint="FILE")
    if info.st_size > 4 * MAX_SOURCE:
        raise click.BadParameter(f"{path} is larger than a module may be ({MAX_SOURCE:,} characters)",
                                 param_hint="FILE")
    return path.read_text(encoding="utf-8", errors="replace")


MAX_ARGS = 1_000_000     # characters of --args


def _json_args(text: str) -> list:
    if len(text) > MAX_ARGS:
        raise click.BadParameter(f"longer than {MAX_ARGS:,} characters", param_hint="--args")
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args") from None
    except RecursionError:
        raise click.BadParameter("nested too deeply", param_hint="--args") from None
    except ValueError as exc:        # an integer of more digits than Python converts
        raise click.BadParameter(f"not usable: {str(exc).split(';')[0]}", param_hint="--args") from None
    if not isinstance(args, list):
        raise click.BadParameter("must be a JSON list of arguments, e.g. '[{\"a\": 1}]'", param_hint="--args")
    return args


@cli.group(name="adapters", cls=_Group)
def adapters_group():
    """The LoRA adapters a task's agents can use: the package's and those finetune saved in the data folder."""


@adapters_group.command(name="list")
@_task_option()
@_JSON
def adapters_list(task, as_json):
    """Each adapter: its method (ld: selection, kd: moves, write: functions for new rules, read: rules
    in words), where it lives, its steps, when it was made, and the default of each method."""
    items = adapters.listed(task, _base(task))
    if as_json:
        click.echo(json.dumps([{"name": i.name, "path": str(i.path), "method": i.method, "shipped": i.shipped,
                                "signed": i.signed, "promoted": i.promoted, "default": i.default,
                                "steps": i.steps, "created": i.manifest.get("created")}
                               for i in items], indent=2))
        return
    for item in items:
        click.echo(item.line())
    click.echo(f"{len(items)} adapters for {task} (use one: --adapter DIR; ldengine adapters show NAME)")


@adapters_group.command(name="show")
@click.argument("name")
@_task_option()
def adapters_show(name, task):
    """NAME's folder and its manifest (what it was trained on, with which settings, its figures)."""
    item = adapters.find_listed(task, _base(task), name)
    click.echo(item.line())
    click.echo(f"path: {item.path}")
    click.echo(json.dumps(item.manifest, indent=2))


@adapters_group.command(name="remove")
@click.argument("name")
@_task_option()
@click.option("--yes", is_flag=True, help="Remove without asking.")
def adapters_remove(name, task, yes):
    """Delete NAME's folder from the data folder (adapters that ship with the package stay)."""
    item = adapters.find_listed(task, _base(task), name)
    adapters.check_removable(item)          # before asking
    if not yes:
        _need_answer("pass --yes to remove without asking")
        click.confirm(f"remove the adapter {item.name} ({item.path})?", abort=True)
    click.echo(f"removed {adapters.remove_adapter(item)}")


@cli.command(name="logs")
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(0),
              help="How many of the latest runs to show (0: all).")
@_JSON
def logs_cmd(count, as_json):
    """The latest run and eval commands, each with its full command line, version and key figures
    (the log is <data folder>/logs.jsonl)."""
    found = runlog.records(count or None)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for record in found:
        click.echo(runlog.line(record))
    click.echo(f"{len(found)} run(s) shown from {runlog.log_path()}" if found
               else f"no run logged yet in {runlog.log_path()}")


@cli.group(name="cache", cls=_Group)
def cache_group():
    """The on-disk cache: converted students and retriever indexes (LDENGINE_CACHE moves it)."""


@cache_group.command(name="info")
@_JSON
def cache_info(as_json):
    """Where the cache is, what each part holds and its size on disk."""
    parts = cache_parts()
    if as_json:
        click.echo(json.dumps({"root": str(cache_root()), "parts": [
            {"name": p.name, "path": str(p.path), "bytes": p.size, "items": p.items, "what": p.what,
             "removed_by_clean": p.cleaned} for p in parts]}, indent=2))
        return
    click.echo(f"cache: {cache_root()} (LDENGINE_CACHE moves it)")
    for line in _aligned([(p.name, _megabytes(p.size), f"{p.items} item(s)",
                           p.what + ("" if p.cleaned else "; kept by cache clean")) for p in parts]):
        click.echo("  " + line)
    cleaned = sum(p.size for p in parts if p.cleaned)
    click.echo(f"ldengine cache clean frees {_megabytes(cleaned)} (the engine rebuilds those parts when needed)")


@cache_group.command(name="clean")
@click.option("--yes", is_flag=True, help="Remove without asking.")
def cache_clean(yes):
    """Remove the converted students, retriever indexes and remembered hashes; the engine
    rebuilds them when next needed (a student conversion takes about 40 s). The adapters
    of finetune --quick are kept."""
    parts = [p for p in cache_parts() if p.cleaned and p.path.exists()]
    if not parts:
        click.echo(f"nothing to remove in {cache_root()}")
        return
    size = _megabytes(sum(p.size for p in parts))
    if not yes:
        _need_answer("pass --yes to remove without asking")
        click.confirm(f"remove {', '.join(p.name for p in parts)} ({size}) from {cache_root()}?", abort=True)
    removed = clean_cache()
    click.echo(f"removed {', '.join(str(p.path) for p in removed)} ({size})")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _load_plugin_commands() -> None:
    """Each plugin's commands on their own: one that raises is reported, not fatal."""
    try:
        reg = registry()
    except LDEngineError:   # e.g. a misspelt LDENGINE_LOAD_PLUGINS: the command that needs plugins says so
        return
    for impl in reg.hook_order("ldengine_register_commands"):
        try:
            reg.call_one("ldengine_register_commands", impl, cli=cli)
        except Exception as exc:
            click.echo(f"warning: plugin {impl.plugin_name!r} could not add its commands: {exc}", err=True)


cli.add_command(serve_command, "serve")


def main() -> None:
    """The console script: every error, a usage error too, as one ``Error:`` line first, then a hint."""
    atexit.register(_skip_teardown)   # registered first, so it runs after every other exit handler
    _load_plugin_commands()
    sys.exit(_exit_code(_command_code()))


def _command_code() -> int:
    try:
        code = cli.main(prog_name="ldengine", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:    # a bare group: its help, as click prints it
        exc.show()
        return exc.exit_code
    except click.UsageError as exc:     # click's own order is the usage, the hint, then the error
        click.echo(f"Error: {exc.format_message()}", err=True)
        if exc.ctx is not None:
            click.echo(f"Try '{exc.ctx.command_path} --help' for help.", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return code if isinstance(code, int) else 0


_EXIT: dict = {}


def _exit_code(code: int) -> int:
    _EXIT["code"] = code
    return code


def _skip_teardown() -> None:
    """After a command that loaded torch has finished and every other exit handler has run:
    flush the standard streams and end the process with its exit code, without the
    interpreter unloading torch and transformers module by module (0.9 s of a 6 s one-game
    ``ldengine run`` on two cores; benchmarks/RESULTS.md). Files are written and closed by
    the commands themselves. After an uncaught exception, or without torch, the usual exit."""
    if "code" in _EXIT and "torch" in sys.modules:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(_EXIT["code"])
