"""The house (docs/architecture.md): imports go down the layers, the engine type-checks,
function-level imports only keep heavy libraries out of ``ldengine --help``, and a plugin's
object that lacks a member of its contract is refused when the plugin loads."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import ldengine.cli as cli_module
from ldengine.contracts import Agent, EmergencyKind, Task, members, missing
from ldengine.errors import PluginError
from ldengine.registry import Registry
from ldengine.runner import build_agent
from tests.test_plugins import install_plugin, plugin_dir  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent
# What a function may import inside its body: libraries that take seconds to load, or that
# only some commands need, so that `import ldengine` and `ldengine --help` stay light.
HEAVY = ("torch", "transformers", "peft", "hnswlib", "gguf", "safetensors", "numpy", "matplotlib", "fastapi",
         "uvicorn", "starlette", "pydantic", "openai", "tqdm", "huggingface_hub", "tokenizers", "llguidance")


# ... and two engine modules kept out of a package's import on purpose: the Python API (so that
# `import ldengine` stays light) and the isolated sandbox's parent side (the worker imports
# ldengine.sandbox and needs none of it).
LAZY = {("ldengine/__init__.py", "ldengine"), ("ldengine/sandbox/__init__.py", "ldengine.sandbox.isolated")}


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@pytest.mark.architecture
def test_every_import_goes_down_the_layers():
    """import-linter's contracts (setup.cfg): the engine's layers, no engine import of a
    plugin or of the function base, the task plugins independent of each other."""
    done = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout or "Contracts: 3 kept, 0 broken" in done.stdout


@pytest.mark.architecture
def test_the_engine_type_checks():
    done = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_imports_inside_functions_are_only_heavy_libraries():
    """An engine module imported inside a function hides where the module sits (``LAZY``
    names the two deliberate exceptions)."""
    found = []
    for path in sorted((ROOT / "ldengine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom):
                    names = [inner.module or ""]
                elif isinstance(inner, ast.Import):
                    names = [a.name for a in inner.names]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] not in HEAVY and (path.relative_to(ROOT).as_posix(), name) not in LAZY:
                        found.append(f"{path.relative_to(ROOT)}:{inner.lineno} imports {name}")
    assert not found, "\n".join(found)


def test_contracts_list_their_members():
    assert {"name", "pipeline", "rules", "play", "summarize", "summarize_state"} <= set(members(Task))
    assert {"stage", "after", "params", "reference", "properties"} <= set(members(EmergencyKind))
    assert missing(object(), Agent) == ["act", "stats"]


TASK_WITHOUT_PLAY = '''
from ldengine.hookspecs import hookimpl

class Half:
    name, description, pipeline, rules = "half", "a task without play", ["a.b"], "none"

    def summarize(self, results):
        return {}

    def summarize_state(self, state):
        return ""

@hookimpl
def ldengine_register_tasks(register):
    register(Half())

@hookimpl
def ldengine_register_emergencies(register):
    class NoReference:
        name, task, stage, after, split = "no-reference", "pursuit", "pursuer.rule", "pursuer.filter", "eval"
    register(NoReference())

@hookimpl
def ldengine_register_evaders(register):
    register("stone", 3, "not a policy")

@hookimpl
def ldengine_register_agents(register):
    register("mute", lambda context: object(), "acts on nothing")
'''


def test_an_object_without_a_contract_member_is_refused_naming_plugin_and_member(plugin_dir):  # noqa: F811
    """Registration checks a task's and an emergency kind's members and that an evader is
    callable; an agent is checked when its factory makes it. Each message names the plugin
    and what is missing; everything else still loads."""
    install_plugin(plugin_dir, "ldtest_half", TASK_WITHOUT_PLAY)
    reg = Registry.load()
    error = {p.name: p for p in reg.plugins}["ldtest_half"].error
    assert "plugin 'ldtest_half' registered task 'half' without play: a Task needs name, " in error
    assert "registered emergency 'no-reference' without params, describe, allows" in error
    assert "registered evader 'stone' with a policy that is not callable" in error
    assert "half" not in reg.tasks and "stone" not in reg.evaders and "no-reference" not in reg.emergencies
    assert "pursuit" in reg.tasks and "restricted-area" in reg.emergencies
    with pytest.raises(PluginError, match=r"plugin 'ldtest_half' registered agent 'mute' \(what its factory "
                                          r"returned\) without act, stats"):
        build_agent(reg, reg.tasks["pursuit"].obj, "mute")
    out = CliRunner().invoke(cli_module.cli, ["plugins"], catch_exceptions=False).output
    assert "BROKEN" in out and "without play" in out
