"""Plugins: built-ins and third-party entry points register through the same hooks."""
import os
import sys

import pytest
from click.testing import CliRunner

import ldengine.cli as cli_module
import ldengine.cli.app as cli_app
from ldengine.errors import ManualError
from ldengine.functionbase import FunctionBase
from ldengine.registry import Registry

GOOD_FUNCTION = '''
VERSION = "0.3.0"

def stay_put(obs):
    """Keep every pursuer where it is.

    Stage: pursuer.hold
    Reads: obs["pursuers"]
    Returns: the pursuers' current cells as the action
    Rules: staying is always a legal move.
    Example:
        >>> stay_put({"pursuers": [[1, 2], [3, 4], [5, 6]]})
        [[1, 2], [3, 4], [5, 6]]
    """
    return obs["pursuers"]
'''

PLUGIN = '''
from ldengine.hookspecs import hookimpl

SOURCE = {source!r}

@hookimpl
def ldengine_register_functions(register):
    register("pursuit", SOURCE, "testplugin/hold.py")

@hookimpl
def ldengine_register_evaders(register):
    register("frozen", lambda legal, pursuers, rng: legal[0], "never moves")

@hookimpl
def ldengine_register_agents(register):
    pass

@hookimpl
def ldengine_register_tasks(register):
    pass

class FirstChoice:
    """A student backend that always picks the first candidate."""
    name, model_hash, adapter_hash = "first", "0" * 64, None

    def __init__(self, path=None, adapter=None):
        self.path, self.adapter = path, adapter

    def select(self, prefix, query, options):
        return self.select_batch([(prefix, query, options)])[0]

    def select_batch(self, items):
        from ldengine.models import Selection
        return [Selection(0, [1.0] + [0.0] * (len(o) - 1)) for _, _, o in items]

    def generate(self, prompt, **kw):
        return [""]

    def generate_batch(self, prompts, **kw):
        return [""] * len(prompts)

@hookimpl
def ldengine_register_students(register):
    register("first", FirstChoice, "always the first candidate")

@hookimpl
def ldengine_register_emergencies(register):
    from ldengine_plugins.pursuit.emergencies import PursuitEmergency
    register(PursuitEmergency("no-corner", "No piece may enter a cell (x, y) with x + y < {{s}}.",
                              "not (x + y < {{s}})", lambda c, p, k: c[0] + c[1] >= k["s"],
                              lambda rng, size: {{"s": 3}}))

@hookimpl
def ldengine_register_commands(cli):
    import click

    @cli.command(name="hello-plugin")
    def hello():
        click.echo("hello from a plugin")
'''


def install_plugin(tmp_path, name: str, code: str) -> None:
    """A real distribution on sys.path with an ``ldengine`` entry point."""
    (tmp_path / f"{name}.py").write_text(code)
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[ldengine]\n{name} = {name}\n")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """Puts tmp_path on sys.path for the test, and takes it (and its modules) away after."""
    sys.path.insert(0, str(tmp_path))
    monkeypatch.setattr(cli_app, "_REGISTRY", None)
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for mod in [m for m in sys.modules if m.startswith("ldtest_")]:
            del sys.modules[mod]


def test_it_lists_built_in_plugins_with_their_hooks(registry):
    """It loads the built-in plugins through the same hooks as third-party ones."""
    names = {p.name: p for p in registry.plugins}
    assert names["ldengine_plugins.pursuit"].origin == "built-in"
    assert "ldengine_register_functions" in names["ldengine_plugins.pursuit"].hooks
    assert {"greedy", "random"} <= set(registry.evaders)
    assert "expert" in registry.agents and "pursuit" in registry.tasks


def test_it_loads_a_third_party_plugin_from_its_entry_point(plugin_dir):
    """It registers a third-party plugin's function, evader and command, naming its distribution."""
    install_plugin(plugin_dir, "ldtest_good", PLUGIN.format(source=GOOD_FUNCTION))
    reg = Registry.load()
    info = {p.name: p for p in reg.plugins}["ldtest_good"]
    assert info.origin == "ldtest_good 0.1" and info.error is None
    assert reg.evaders["frozen"].plugin == "ldtest_good"
    base = FunctionBase.build("pursuit", reg.modules_for("pursuit"))
    entry = base.entry("stay_put")
    assert entry.plugin == "ldtest_good" and entry.version.startswith("0.3.0+")
    assert base.call("stay_put", {"pursuers": [[0, 0]]}).value == [[0, 0]]
    out = CliRunner().invoke(cli_module.cli, ["plugins"], catch_exceptions=False).output
    assert "ldtest_good" in out and "frozen" in out and "first" in out


def test_a_plugin_adds_an_emergency_kind_that_games_obey(plugin_dir, pursuit_task):
    """A third party's new rule is listed, and with it in force the referee enforces it."""
    from ldengine.emergency.rule import under_emergency
    install_plugin(plugin_dir, "ldtest_rule", PLUGIN.format(source=GOOD_FUNCTION))
    reg = Registry.load()
    assert reg.emergencies["no-corner"].plugin == "ldtest_rule"
    task = under_emergency(reg, pursuit_task, "no-corner", 0)
    game, _ = task.new_game(0)
    game.pursuers = [(2, 2), (5, 5), (9, 9)]
    step = game.pursuer_step([[1, 1], [5, 5], [9, 9]])
    assert step.illegal == [True, False, False]
    out = CliRunner().invoke(cli_module.cli, ["emergencies", "list"], catch_exceptions=False).output
    assert "no-corner" in out and "x + y < 3" in out


def test_an_emergency_with_a_bad_name_marks_its_plugin_broken(plugin_dir):
    code = ("from ldengine.hookspecs import hookimpl\n\n@hookimpl\n"
            "def ldengine_register_emergencies(register):\n"
            "    class K:\n        name = 'Bad Name'\n    register(K())\n")
    install_plugin(plugin_dir, "ldtest_badrule", code)
    reg = Registry.load()
    assert "invalid name" in {p.name: p for p in reg.plugins}["ldtest_badrule"].error
    assert "restricted-area" in reg.emergencies


def test_a_plugin_student_backend_is_loaded_by_name(plugin_dir, pursuit_base, pursuit_task):
    """It loads a registered student backend for an agent by its --backend name."""
    from ldengine.agents import AgentContext
    from ldengine.models import Student
    install_plugin(plugin_dir, "ldtest_student", PLUGIN.format(source=GOOD_FUNCTION))
    reg = Registry.load()
    assert reg.students["first"].plugin == "ldtest_student" and "transformers" in reg.students
    context = AgentContext(pursuit_task, pursuit_base, {"backend": "first", "student": "m.gguf"}, reg)
    student = context.load_student(adapter="a")
    assert isinstance(student, Student) and (student.path, student.adapter) == ("m.gguf", "a")
    assert student.select("p", "q", ["x", "y"]).index == 0


def test_it_adds_commands_from_plugins(plugin_dir):
    """It lets a plugin add a CLI command through ldengine_register_commands."""
    install_plugin(plugin_dir, "ldtest_cmd", PLUGIN.format(source=GOOD_FUNCTION))
    group = cli_module.cli
    try:
        cli_module._load_plugin_commands()
        result = CliRunner().invoke(group, ["hello-plugin"], catch_exceptions=False)
        assert result.output.strip() == "hello from a plugin"
    finally:
        group.commands.pop("hello-plugin", None)


def test_it_reports_a_broken_plugin_and_carries_on(plugin_dir):
    """It reports a plugin that fails to import, and still loads everything else."""
    install_plugin(plugin_dir, "ldtest_broken", "raise RuntimeError('boom at import')\n")
    reg = Registry.load()
    info = {p.name: p for p in reg.plugins}["ldtest_broken"]
    assert "boom at import" in info.error
    assert "pursuit" in reg.tasks
    out = CliRunner().invoke(cli_module.cli, ["plugins"], catch_exceptions=False).output
    assert "BROKEN" in out and "boom at import" in out


def test_it_reports_a_misspelt_hook(plugin_dir):
    """It unregisters and reports a plugin implementing a hook that does not exist."""
    code = "from ldengine.hookspecs import hookimpl\n\n@hookimpl\ndef ldengine_register_taks(register):\n    pass\n"
    install_plugin(plugin_dir, "ldtest_typo", code)
    reg = Registry.load()
    info = {p.name: p for p in reg.plugins}["ldtest_typo"]
    assert "ldengine_register_taks" in info.error


def test_it_reports_a_plugin_whose_hook_raises(plugin_dir):
    """It records a hook that raises as the plugin's error; other plugins' items stay."""
    code = ("from ldengine.hookspecs import hookimpl\n\n@hookimpl\n"
            "def ldengine_register_evaders(register):\n    register('bad name!', None)\n")
    install_plugin(plugin_dir, "ldtest_raises", code)
    reg = Registry.load()
    assert "invalid name" in {p.name: p for p in reg.plugins}["ldtest_raises"].error
    assert "greedy" in reg.evaders


def test_it_loads_only_allowed_plugins(plugin_dir, monkeypatch):
    """It loads only the entry points named in LDENGINE_LOAD_PLUGINS."""
    install_plugin(plugin_dir, "ldtest_skipped", PLUGIN.format(source=GOOD_FUNCTION))
    monkeypatch.setenv("LDENGINE_LOAD_PLUGINS", "")
    assert "ldtest_skipped" not in {p.name for p in Registry.load().plugins}


def test_a_name_no_plugin_has_in_the_allow_list_is_an_error(plugin_dir, monkeypatch):
    """It names a misspelt LDENGINE_LOAD_PLUGINS entry and the installed ones, in one line,
    instead of quietly loading nothing; commands that need no plugin still run."""
    install_plugin(plugin_dir, "ldtest_named", PLUGIN.format(source=GOOD_FUNCTION))
    monkeypatch.setenv("LDENGINE_LOAD_PLUGINS", "ldtest_named,ldtest_nmaed")
    result = CliRunner().invoke(cli_module.cli, ["plugins"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("Error: LDENGINE_LOAD_PLUGINS names 'ldtest_nmaed', which no installed plugin")
    assert "ldtest_named" in result.output.split("installed:")[1]
    cli_module._load_plugin_commands()          # what `ldengine --help` runs first: no traceback
    monkeypatch.setenv("LDENGINE_LOAD_PLUGINS", "ldtest_named")
    assert "ldtest_named" in {p.name for p in Registry.load().plugins}


def test_it_rejects_a_function_without_manual_fields(plugin_dir):
    """It names the plugin and the function whose docstring lacks a manual field."""
    bad = GOOD_FUNCTION.replace("    Stage: pursuer.hold\n", "")
    install_plugin(plugin_dir, "ldtest_nomanual", PLUGIN.format(source=bad))
    reg = Registry.load()
    with pytest.raises(ManualError, match=r"ldtest_nomanual.*stay_put.*Stage"):
        FunctionBase.build("pursuit", reg.modules_for("pursuit"))
    result = CliRunner().invoke(cli_module.cli, ["functions", "list"])
    assert result.exit_code == 1 and "Stage" in result.output and "Traceback" not in result.output


def test_it_gives_a_duplicate_name_a_version_suffix(plugin_dir):
    """It keeps both functions when two plugins register the same name (in modules of their
    own paths: the same path is refused, see below)."""
    install_plugin(plugin_dir, "ldtest_dup_a", PLUGIN.format(source=GOOD_FUNCTION))
    install_plugin(plugin_dir, "ldtest_dup_b",
                   PLUGIN.format(source=GOOD_FUNCTION).replace("testplugin/hold.py", "testplugin_b/hold.py"))
    reg = Registry.load()
    base = FunctionBase.build("pursuit", reg.modules_for("pursuit"))
    assert {"stay_put", "stay_put_v2"} <= set(base.entries)
    assert base.call("stay_put_v2", {"pursuers": [[2, 2]]}).value == [[2, 2]]
    # the second plugin's evader clashes by name: reported on that plugin, not fatal
    assert "already registered" in {p.name: p for p in reg.plugins}["ldtest_dup_b"].error


SHADOW_PLUGIN = '''
from ldengine.hookspecs import hookimpl


@hookimpl
def ldengine_register_functions(register):
    register("pursuit", "def encircle_evader(obs):\\n    return []\\n", "pursuit/strategy.py")
'''


def test_a_plugin_cannot_replace_another_plugins_module(plugin_dir):
    """A third-party module registered under the base's path (pursuit/strategy.py) is refused,
    naming both plugins; the base's module is the one that plays."""
    from ldengine.registry import Registry
    install_plugin(plugin_dir, "ldtest_shadow", SHADOW_PLUGIN)
    reg = Registry.load()
    strategy = [m for m in reg.modules_for("pursuit") if m.filename == "pursuit/strategy.py"]
    assert len(strategy) == 1 and strategy[0].plugin == "ldengine_plugins.pursuit"
    error = {p.name: p for p in reg.plugins}["ldtest_shadow"].error
    assert "already registered by 'ldengine_plugins.pursuit'" in error and "cannot replace" in error


@pytest.mark.parametrize("alias, said", [
    ("./pursuit/strategy.py", "must be plain"), ("pursuit//strategy.py", "must be plain"),
    ("pursuit/../pursuit/strategy.py", "must be plain"), ("/pursuit/strategy.py", "must be plain"),
    ("PURSUIT/strategy.py", "cannot replace"),
])
def test_an_alias_of_a_shipped_module_path_is_refused(plugin_dir, alias, said):
    """An independent referee registered the base's path under aliases (``./``, ``//``, ``..``,
    another case): each became a module of its own beside the base's. Now a path must be plain,
    and paths differing only in case are one path."""
    from ldengine.registry import Registry
    install_plugin(plugin_dir, "ldtest_alias", SHADOW_PLUGIN.replace('"pursuit/strategy.py"', repr(alias)))
    reg = Registry.load()
    assert [m.plugin for m in reg.modules_for("pursuit") if m.filename.casefold().endswith("strategy.py")] == [
        "ldengine_plugins.pursuit"]
    assert said in {p.name: p for p in reg.plugins}["ldtest_alias"].error


def test_two_plugins_with_one_module_path_keep_the_first(plugin_dir):
    """The same path from two third-party plugins: the second is refused, naming the first."""
    from ldengine.registry import Registry
    install_plugin(plugin_dir, "ldtest_same_a", PLUGIN.format(source=GOOD_FUNCTION))
    install_plugin(plugin_dir, "ldtest_same_b", PLUGIN.format(source=GOOD_FUNCTION))
    reg = Registry.load()
    holders = [m.plugin for m in reg.modules_for("pursuit") if m.filename == "testplugin/hold.py"]
    assert len(holders) == 1
    later = "ldtest_same_b" if holders[0] == "ldtest_same_a" else "ldtest_same_a"
    assert f"already registered by {holders[0]!r}" in {p.name: p for p in reg.plugins}[later].error


ORDERED = '''
from ldengine.hookspecs import hookimpl


@hookimpl({marker})
def ldengine_register_evaders(register):
    register("{name}", lambda obs: obs["evader"], "stays where it is")
    register("greedy", lambda obs: obs["evader"], "a third-party greedy")
'''


def test_hooks_are_called_through_pluggy_in_the_order_their_markers_ask(plugin_dir):
    """Two third-party plugins registered first-last-first: trylast's name comes after tryfirst's;
    neither takes the built-in 'greedy' (refused, the plugin marked), and pluggy's hook-call
    monitoring sees every registration call."""
    install_plugin(plugin_dir, "ldtest_late", ORDERED.format(marker="trylast=True", name="late_evader"))
    install_plugin(plugin_dir, "ldtest_early", ORDERED.format(marker="tryfirst=True", name="early_evader"))
    seen = []
    from ldengine import registry as registry_module
    real = registry_module.build_plugin_manager

    def monitored():
        pm, infos = real()
        pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append((name, [i.plugin_name for i in impls])),
                                   lambda outcome, name, impls, kwargs: None)
        return pm, infos
    registry_module.build_plugin_manager = monitored
    try:
        reg = Registry.load()
    finally:
        registry_module.build_plugin_manager = real
    names = list(reg.evaders)
    assert "early_evader" in names, [(p.name, p.error) for p in reg.plugins]
    assert names.index("early_evader") < names.index("late_evader")
    assert reg.evaders["greedy"].plugin == "ldengine_plugins.pursuit"
    errors = {p.name: p.error for p in reg.plugins}
    assert "already registered by 'ldengine_plugins.pursuit'" in errors["ldtest_early"]
    calls = [impls for name, impls in seen if name == "ldengine_register_evaders"]
    assert [impls[0] for impls in calls][-2:] == ["ldtest_early", "ldtest_late"]


def test_LDENGINE_TRACE_PLUGINS_writes_each_hook_call_with_its_plugin():
    """With LDENGINE_TRACE_PLUGINS set, each hook call is written to standard error with the
    plugin it calls (pluggy's hook-call monitoring: the calls go through ``pm``); unset, nothing."""
    import subprocess
    probe = [sys.executable, "-m", "ldengine", "plugins"]
    traced = subprocess.run(probe, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "LDENGINE_TRACE_PLUGINS": "1"})
    assert traced.returncode == 0, traced.stderr
    lines = traced.stderr.splitlines()
    assert "ldengine plugins: ldengine_register_tasks -> ldengine_plugins.pursuit" in lines
    assert "ldengine plugins: ldengine_register_students -> ldengine_plugins.agents" in lines
    quiet = subprocess.run(probe, capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "LDENGINE_TRACE_PLUGINS"})
    assert "ldengine plugins:" not in quiet.stderr
