"""The shipped third-party plugin (plugins/ldengine-pursuit-extras), installed with pip into
the test environment, shown by ``ldengine plugins`` and ``functions list``, used in a game,
and uninstalled."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "plugins" / "ldengine-pursuit-extras"


def pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=300)


def ldengine(*args):
    return subprocess.run([sys.executable, "-m", "ldengine", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


@pytest.mark.slow
def test_the_extras_plugin_installs_with_pip_registers_and_plays(tmp_path):
    """It installs the package with pip (its own setup.cfg, entry point in group ``ldengine``);
    ldengine then lists the plugin, its evader and its functions (the one at a stage no
    pipeline runs with a warning), plays its pursuer.decide alternative in the states its
    When: names, and plays games against the new evader; uninstalled, all of it is gone."""
    source = tmp_path / "package"      # a copy: building leaves build/ and .egg-info behind
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    installed = pip("install", "--no-deps", "--no-build-isolation", str(source))
    assert installed.returncode == 0, installed.stderr
    try:
        plugins = ldengine("plugins")
        assert plugins.returncode == 0, plugins.stderr
        assert "pursuit_extras" in plugins.stdout and "ldengine-pursuit-extras 0.1.0" in plugins.stdout
        assert "lookahead" in plugins.stdout
        functions = ldengine("functions", "list", "--task", "pursuit")
        assert "evader_room" in functions.stdout and "pursuer.analyse" in functions.stdout
        assert "rush_from_three_sides" in functions.stdout and "[when: every pursuer is 6" in functions.stdout
        assert "warning: evader_room (pursuit_extras)" in functions.stdout and "never played" in functions.stdout
        trace = tmp_path / "t.jsonl"
        expert = ldengine("run", "pursuit", "--agent", "expert", "--games", "5", "--quiet", "--trace", str(trace))
        assert expert.returncode == 0, expert.stderr
        chosen = [sel["chosen"] for line in trace.read_text().splitlines() for sel in
                  json.loads(line).get("selections", [])]
        assert "rush_from_three_sides" in chosen and "pin_against_edge" in chosen
        read = ldengine("functions", "read", "--task", "pursuit")
        assert read.returncode == 0, read.stderr
        assert re.search(r"rush_from_three_sides +all_far", read.stdout), read.stdout
        assert re.search(r"bring_up_straggler +straggler", read.stdout) and "6 When: fields, 6 read, 0 unread" in read.stdout
        ld_summary = tmp_path / "ld.json"
        ld = ldengine("run", "pursuit", "--games", "3", "--seed", "40000", "--quiet", "--json", str(ld_summary))
        assert ld.returncode == 0, ld.stderr
        zero_shot = json.loads(ld_summary.read_text())     # the committed adapter never saw the plugin
        assert zero_shot["selection_accuracy"] == 1.0 and zero_shot["success"] == 1.0
        assert zero_shot["conditions"]["box_in_centre"] == "deep_inside"
        summary = tmp_path / "s.json"
        played = ldengine("run", "pursuit", "--agent", "expert", "--evader", "lookahead", "--games", "3",
                          "--quiet", "--json", str(summary))
        assert played.returncode == 0, played.stderr
        result = json.loads(summary.read_text())
        assert result["evader"] == "lookahead" and result["games"] == 3 and result["failure_with_violation"] == 0
    finally:
        removed = pip("uninstall", "--yes", "ldengine-pursuit-extras")
    assert removed.returncode == 0, removed.stderr
    after = ldengine("plugins")
    assert "pursuit_extras" not in after.stdout


def test_the_built_in_plugins_and_function_base_install_under_names_of_their_own(tmp_path):
    """ldengine's distribution installs ldengine, ldengine_plugins and ldengine_function_base:
    no generic top-level `plugins` or `function_base` that another package could shadow.
    Outside the repository only the prefixed names import, and the function base's modules
    and adapters are found through them."""
    probe = ("import importlib.util, json\n"
             "from importlib.metadata import distribution\n"
             "print(sorted(distribution('ldengine').read_text('top_level.txt').split()))\n"
             "from ldengine.taskkit import function_base_root\n"
             "from ldengine.adapters import PACKAGED_SHARED_DIR\n"
             "import ldengine_plugins.pursuit\n"
             "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in ('plugins', 'function_base')}))\n"
             "print((function_base_root() / 'pursuit' / 'strategy.py').is_file(), any(PACKAGED_SHARED_DIR.glob('*/manifest.json')))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    tops, found, files = out.stdout.splitlines()
    assert tops == "['ldengine', 'ldengine_function_base', 'ldengine_plugins']"
    assert json.loads(found) == {"plugins": False, "function_base": False}
    assert files == "True True"
