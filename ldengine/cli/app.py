"""The ``ldengine`` command group and what its commands share: the plugin registry, option
decorators, and the checks of options made before any model loads. User errors become
one-line messages here (``_Group``), and only here."""

from __future__ import annotations

import io
import os
import stat
import sys
import warnings
from pathlib import Path

import click

from ldengine.contracts import TaskBase
from ldengine import outputs
from ldengine.errors import LDEngineError
from ldengine.functionbase import base_for
from ldengine.registry import Registry
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
TASK_DEFAULT = " [default: the first task registered (ldengine plugins lists them in order)]"
EVADER_HELP = "Evader policy (ldengine plugins lists them). [default: the task's own, if it has one]"


def _default_task() -> str:
    """--task when not given: the first task registered (the built-ins register first, in
    ``plugins.DEFAULT_PLUGINS`` order), as ``Registry.default_task`` says."""
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


def _check_outputs(files: dict, plot: str | None = None, task: TaskBase | None = None, folders: dict | None = None,
                   force: bool = True) -> None:
    """Every path a command will write (option -> path), checked before any game is played,
    so that a bad one costs one line instead of the games; ``plot`` also needs a task that draws.
    Without ``force`` a file that exists with something in it is refused, not overwritten."""
    if plot and task is not None and task.plot is None:
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


_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")


def _aligned(rows: list[tuple]) -> list[str]:
    """Rows of words with every column but the last as wide as its widest word."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)] if rows else []
    return ["  ".join([word.ljust(width) for word, width in zip(row, widths)] + [row[-1]]) for row in rows]


def _base(task: str, version: str | None = None):
    reg = registry()
    reg.get("tasks", task)
    return base_for(reg, task, version)


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


def _generated_task(task: str | None) -> str | None:
    if task:
        registry().get("tasks", task)
    return task


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
