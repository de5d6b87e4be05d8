"""At the keyboard: help on every command, quiet libraries, one error prefix, JSON from the
list commands, aligned columns, and a header saying what played."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ldengine.cli import cli
from tests.test_plugins import install_plugin, plugin_dir  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, **kwargs)


def command_paths(group=cli, path=()):
    for name, command in group.commands.items():
        yield [*path, name]
        if isinstance(command, click.Group):
            yield from command_paths(command, (*path, name))


@pytest.mark.parametrize("path", list(command_paths()), ids=" ".join)
def test_every_command_takes_h_for_help(path):
    """It prints the command's help for -h, as for --help."""
    result = invoke(*path, "-h")
    assert result.exit_code == 0 and result.output.startswith(f"Usage: cli {' '.join(path)}")


WARNING_PLUGIN = '''
from ldengine.hookspecs import hookimpl

@hookimpl
def ldengine_register_commands(cli):
    import os
    import warnings
    import click

    @cli.command(name="old-api")
    def old_api():
        warnings.warn("old_api() is deprecated", FutureWarning)
        click.echo(f"verbosity {os.environ.get('TRANSFORMERS_VERBOSITY')}")
'''


def test_library_warnings_show_only_with_verbose(plugin_dir):  # noqa: F811
    """A deprecation warning (here from a plugin's command) is hidden, and transformers told
    to keep quiet, unless --verbose is given."""
    install_plugin(plugin_dir, "ldtest_warns", WARNING_PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(ROOT)])}
    env.pop("TRANSFORMERS_VERBOSITY", None)
    run = lambda *args: subprocess.run([sys.executable, "-c", "from ldengine.cli import main; main()", *args],  # noqa: E731
                                       capture_output=True, text=True, env=env)
    quiet, verbose = run("old-api"), run("--verbose", "old-api")
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert quiet.stderr == "" and quiet.stdout == "verbosity error\n"
    assert "FutureWarning: old_api() is deprecated" in verbose.stderr and verbose.stdout == "verbosity None\n"


def test_the_engines_own_error_lines_start_like_clicks():
    """Every error line the engine prints itself starts with "Error:", as click's do."""
    sources = [p for folder in ("ldengine", "plugins") for p in (ROOT / folder).rglob("*.py") if "build" not in p.parts]
    lowercase = [f"{p.name}: {line.strip()}" for p in sources for line in p.read_text(encoding="utf-8").splitlines()
                 if re.search(r"""(echo|print|log)\(f?["']error: """, line)]
    assert not lowercase


@pytest.mark.parametrize("args, check", [
    (["plugins"], lambda d: {"ldengine_plugins.pursuit", "ldengine_plugins.twentyone"} <= {p["name"] for p in d["plugins"]}
     and {"kind": "task", "name": "pursuit", "plugin": "ldengine_plugins.pursuit"}.items() <= d["registered"][0].items()),
    (["functions", "list"], lambda d: d["version"] == "plugins" and len(d["base_hash"]) == 64
     and "capture_adjacent" in {f["name"] for f in d["functions"]}),
    (["emergencies", "list"], lambda d: {"name": "restricted-area", "split": "eval"}.items()
     <= next(k for k in d if k["name"] == "restricted-area").items()
     and next(k for k in d if k["name"] == "restricted-area")["params"] == ["x0", "x1", "y0", "y1"]),
    (["generated", "list"], lambda d: isinstance(d, list)),
])
def test_the_list_commands_print_json(args, check):
    """With --json each list command prints one JSON document with what its lines show."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0 and check(json.loads(result.output))


def test_an_unknown_task_in_emergencies_list_is_an_error():
    """It says the task is unknown (it printed nothing before)."""
    result = CliRunner().invoke(cli, ["emergencies", "list", "--task", "chess"])
    assert result.exit_code == 1 and result.output.startswith("Error: unknown task 'chess' (known: ")
    assert invoke("emergencies", "list", "--task", "twentyone").output == "task twentyone has no emergency kinds\n"
    lines = invoke("emergencies", "list").output.splitlines()
    assert any(line.startswith("restricted-area") and "params x0, x1, y0, y1 " in line for line in lines)


def test_plugins_lists_in_aligned_columns():
    """Each column starts at the same place on every line (a long plugin name once pushed its
    row out of line)."""
    lines = invoke("plugins").output.splitlines()
    plugins = [line for line in lines if line.startswith("ldengine_plugins.")]
    registered = [line for line in lines if line.startswith("  ") and " from " in line]
    assert len(plugins) >= 4 and len(registered) > 20
    assert len({re.search(r"built-in", line).start() for line in plugins}) == 1
    assert len({line.index(" from ") for line in registered}) == 1


def test_the_header_and_summary_name_the_base_and_the_emergency(tmp_path):
    """The first line and --json name the function base version and the emergency in force;
    an agent without a model names no student or adapter."""
    out = tmp_path / "r.json"
    result = invoke("run", "pursuit", "--agent", "expert", "--emergency", "restricted-area", "--json", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith("| 1 game (seeds 0-0) | base plugins | emergency restricted-area")
    summary = json.loads(out.read_text())
    assert {k: summary[k] for k in ("student", "dtype", "adapter", "function_base_version", "emergency")} == {
        "student": None, "dtype": None, "adapter": None, "function_base_version": "plugins",
        "emergency": "restricted-area"}



def test_the_console_script_says_the_error_first():
    """A usage error from the console script is one "Error:" line, then the help hint: the same
    prefix as every other error, and no usage block before it; a bare group still prints its help."""
    run = lambda *args: subprocess.run([sys.executable, "-c", "from ldengine.cli import main; main()", *args],  # noqa: E731
                                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    bad = run("run", "pursuit", "--games", "x")
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[0].startswith("Error: Invalid value for '--games'")
    assert bad.stderr.splitlines()[1] == "Try 'ldengine run --help' for help."
    unknown = run("frobnicate")
    assert unknown.returncode == 2 and unknown.stderr.startswith("Error: No such command 'frobnicate'.")
    bare = run()
    assert "Usage:" in bare.stdout + bare.stderr and "Error:" not in bare.stdout + bare.stderr
    assert run("--version").returncode == 0
