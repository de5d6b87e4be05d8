"""The ``ldengine`` command line. User errors become one-line messages here, and only here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ldengine import __version__
from ldengine.errors import LDEngineError


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
        from ldengine.registry import Registry
        _REGISTRY = Registry.load()
    return _REGISTRY


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="ldengine")
def cli():
    """Logic Distillation: small models select sandboxed functions from a teacher's function base."""


@cli.command()
@click.argument("task")
@click.option("--agent", default="ld", show_default=True, help="Agent that plays the pursuers (ldengine plugins lists them).")
@click.option("--games", default=1, show_default=True, type=click.IntRange(1, 100_000), help="Number of games.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Game i uses seed SEED+i.")
@click.option("--evader", default="greedy", show_default=True, help="Evader policy (ldengine plugins lists them).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), help="Write the summary as JSON.")
@click.option("--trace", type=click.Path(dir_okay=False, writable=True), help="Write a JSON Lines trace.")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), help="Draw the first game's trajectories (PNG).")
@click.option("--audit", type=click.Path(dir_okay=False, writable=True), help="Log every sandbox call as JSON Lines.")
@click.option("--student", type=click.Path(exists=True), help="Student model: a .gguf file or a local HF model folder.")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False), help="LoRA adapter folder (default: the committed one for this base).")
@click.option("--backend", default="transformers", show_default=True, help="Student backend (ldengine plugins lists them).")
@click.option("-k", "k", type=click.IntRange(1, 20), default=5, show_default=True, help="Retriever top-K.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run(task, agent, games, seed, evader, json_path, trace, plot, audit, student, adapter, backend, k, quiet):
    """Play GAMES seeded games of TASK and print a summary."""
    from ldengine.runner import RunConfig, run_games
    _check_writable(json_path, trace, plot, audit)
    reg = registry()
    options = {"student": student, "adapter": adapter, "backend": backend, "k": k}
    cfg = RunConfig(task, agent, games, seed, evader, trace, audit, progress=not quiet, options=options)
    outcome = run_games(reg, cfg)
    click.echo(format_summary(outcome.summary))
    if json_path:
        Path(json_path).write_text(json.dumps(outcome.summary, indent=2) + "\n", encoding="utf-8")
    if plot and outcome.results:
        reg.get("tasks", task).obj.plot(outcome.results[0], plot, f"{agent} vs {evader} evader")
        click.echo(f"plot: {plot}")
    if outcome.interrupted:
        raise click.ClickException(f"interrupted after {len(outcome.results)} game(s); "
                                   "the summary and trace cover those")


def _check_writable(*paths) -> None:
    for path in paths:
        if path and not Path(path).resolve().parent.is_dir():
            raise click.BadParameter(f"folder of {path!r} does not exist")


def format_summary(s: dict) -> str:
    games = s["games"]
    seeds = f"seeds {s['seed']}-{s['seed'] + games - 1}" if games else "no games"
    avg = "-" if s["avg_steps_success"] is None else f"{s['avg_steps_success']:.2f}"
    plural = "game" if games == 1 else "games"
    lines = [f"{s['task']} | agent {s['agent']} | evader {s['evader']} | {games} {plural} ({seeds})",
             f"success {s['success']:.3f}  failure without violation {s['failure_without_violation']:.3f}"
             f"  failure with violation {s['failure_with_violation']:.3f}",
             f"average steps of success {avg}  violations {s['violations']}"]
    if s.get("selection_accuracy") is not None:
        lines[-1] += f"  selection accuracy {s['selection_accuracy']:.3f}"
    rate = games / s["wall_s"] if s["wall_s"] else 0.0
    lines.append(f"wall {s['wall_s']:.2f} s ({rate:.1f} games/s)")
    return "\n".join(lines)


@cli.command(name="plugins")
def plugins_cmd():
    """List loaded plugins, where they came from, and what they registered."""
    reg = registry()
    for info in reg.plugins:
        status = f"BROKEN: {info.error}" if info.error else ", ".join(info.hooks)
        click.echo(f"{info.name:<20} {info.origin:<24} {status}")
    for kind in ("tasks", "evaders", "agents", "students"):
        for item in getattr(reg, kind).values():
            click.echo(f"  {kind[:-1]:<7} {item.name:<12} from {item.plugin}: {item.description}")
    for mod in reg.modules:
        click.echo(f"  module  {mod.filename:<24} from {mod.plugin} (task {mod.task})")


@cli.group(cls=_Group)
def functions():
    """Read the function base's manual."""


def _base(task: str):
    from ldengine.functionbase import FunctionBase
    reg = registry()
    reg.get("tasks", task)
    return FunctionBase.build(task, reg.modules_for(task))


@functions.command(name="list")
@click.option("--task", default="pursuit", show_default=True)
def functions_list(task):
    """One line per function: name, stage, version (module version + content hash), summary."""
    base = _base(task)
    for e in base.entries.values():
        click.echo(f"{e.name:<28} {e.stage:<18} {e.version:<16} {e.summary}")
    click.echo(f"{len(base)} functions, base hash {base.hash[:12]}")


@functions.command(name="show")
@click.argument("name")
@click.option("--task", default="pursuit", show_default=True)
def functions_show(name, task):
    """The full manual entry of NAME, with its version and source hash."""
    e = _base(task).entry(name)
    click.echo(f"{e.name}  (version {e.version}, sha256 {e.source_hash}, {e.module}, plugin {e.plugin})\n")
    click.echo(e.docstring)


@cli.command()
@click.argument("query")
@click.option("--task", default="pursuit", show_default=True)
@click.option("-k", "k", type=click.IntRange(1, 50), default=5, show_default=True)
def retrieve(query, task, k):
    """Show the top-K manual entries the dense retriever returns for QUERY."""
    from ldengine.retriever import Retriever
    base = _base(task)
    for rank, (name, score) in enumerate(Retriever.for_base(base).search(query, k), 1):
        e = base.entry(name)
        click.echo(f"{rank}. {score:.3f}  {name:<28} {e.stage:<18} {e.summary}")


@cli.command()
@click.option("--task", default="pursuit", show_default=True)
@click.option("--student", type=click.Path(exists=True), help="Student model (default: SmolLM2-135M-Instruct GGUF).")
@click.option("--steps", default=24, show_default=True, type=click.IntRange(1, 100_000), help="LoRA training steps.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1, 512))
@click.option("--lr", default=3e-3, show_default=True, type=click.FloatRange(1e-6, 1.0))
@click.option("--top-layers", default=6, show_default=True, type=click.IntRange(0, 1000), help="LoRA on the last N layers (0: all).")
@click.option("--train-games", default=10, show_default=True, type=click.IntRange(1, 10_000), help="Expert games for training data.")
@click.option("--heldout-games", default=10, show_default=True, type=click.IntRange(1, 10_000), help="Held-out games for evaluation.")
@click.option("--out", type=click.Path(file_okay=False), help="Adapter folder (default: a versioned folder under function_base/TASK/adapters/).")
def finetune(task, student, steps, batch_size, lr, top_layers, train_games, heldout_games, out):
    """Fine-tune the student (LoRA) to select the manual's functions; save adapter + manifest."""
    from ldengine.finetune import FinetuneConfig, finetune as run_finetune
    registry().get("tasks", task)
    cfg = FinetuneConfig(task, student, steps, batch_size, lr, top_layers=top_layers or None, out=out,
                         train_seeds=list(range(10_000, 10_000 + train_games)),
                         heldout_seeds=list(range(20_000, 20_000 + heldout_games)))
    manifest = run_finetune(registry(), cfg, log=click.echo)
    click.echo(f"adapter: {manifest['path']}  held-out accuracy {manifest['heldout_accuracy']:.3f} "
               f"(shuffled candidates {manifest['heldout_shuffled_accuracy']:.3f})")


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
    from ldengine.sandbox import IsolatedSandbox, Limits, compile_module
    args = _json_args(args_json)
    source = Path(file).read_text(encoding="utf-8", errors="replace")
    module = compile_module(source, filename=Path(file).name, load=False)  # loads only in the worker
    limits = Limits(wall_s=timeout, cpu_s=timeout, memory_mb=memory_mb)
    with IsolatedSandbox(limits) as box:
        result = box.call(module, name, *args)
    if result.ok:
        click.echo(json.dumps(result.value))
        click.echo(f"ok in {result.duration * 1000:.1f} ms", err=True)
    else:
        click.echo(f"error: {result.error}", err=True)
        sys.exit(1)


def _json_args(text: str) -> list:
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args") from None
    if not isinstance(args, list):
        raise click.BadParameter("must be a JSON list of arguments, e.g. '[{\"a\": 1}]'", param_hint="--args")
    return args


def _load_plugin_commands() -> None:
    """Each plugin's commands on their own: one that raises is reported, not fatal."""
    for impl in registry().pm.hook.ldengine_register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:
            click.echo(f"warning: plugin {impl.plugin_name!r} could not add its commands: {exc}", err=True)


def main() -> None:
    _load_plugin_commands()
    cli()
