"""``ldengine sandbox``: run a module's function in the isolated worker."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import click

from ldengine.cli.app import _Group, cli
from ldengine.sandbox import IsolatedSandbox, Limits, compile_module
from ldengine.sandbox.compiled import MAX_SOURCE


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
