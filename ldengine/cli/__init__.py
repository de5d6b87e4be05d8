"""The ``ldengine`` command line: one module per command group (``ldengine.cli.*``); this
one adds the plugins' commands and is the console script's entry (``main``)."""

from __future__ import annotations

import atexit
import os
import sys

import click

from ldengine.cli import emergencies, library, play, rules, sandboxing, stores, train  # noqa: F401  (each adds its commands to cli)
from ldengine.cli.app import cli, registry
from ldengine.errors import LDEngineError
from ldengine.serve import serve_command


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
