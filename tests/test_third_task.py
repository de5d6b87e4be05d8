"""A third task the engine has never heard of (tests/data/ldtest_walk.py: a walker on a line,
two stages, two alternatives at its decide stage, two kinds of new rule) installed as a plugin
and run from the command line as its author would: ``run`` with the expert, ``finetune --quick``
saving a promoted adapter into the plugin's own folder (so ``ld`` finds it without --adapter),
``eval`` of three agents, a writing adapter trained on its training kinds, and a run with its
held-out new rule in force. Nothing in the engine names this task: ``ldengine/`` is unchanged
by it (a test below reads the engine's source for the task's words)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "tests" / "data" / "ldtest_walk.py"


@pytest.fixture
def walk(tmp_path):
    """The plugin installed as a distribution with an entry point in group ``ldengine``, in a
    folder of its own (its adapters folder beside it), and a fresh user data folder."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(PLUGIN, site / "ldtest_walk.py")
    info = site / "ldtest_walk-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ldtest-walk\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ldengine]\nldtest_walk = ldtest_walk\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               LDENGINE_DATA=str(tmp_path / "data"), LDENGINE_EMERGENCY_DIR=str(tmp_path / "emergencies"))

    def ldengine(*args, ok=True):
        done = subprocess.run([sys.executable, "-m", "ldengine", *args], capture_output=True, text=True,
                              timeout=600, env=env, cwd=tmp_path)
        if ok:
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done
    return site, ldengine


@pytest.mark.slow
def test_a_third_task_runs_through_run_finetune_eval_and_an_emergency(walk, tmp_path):
    site, ldengine = walk
    adapters = site / "walk_adapters"
    assert "ldtest_walk" in ldengine("plugins").stdout

    expert = ldengine("run", "linewalk", "--agent", "expert", "--games", "4", "--quiet", "--json", str(tmp_path / "e.json"))
    summary = json.loads((tmp_path / "e.json").read_text())
    assert summary["success"] == 1.0 and summary["selection_accuracy"] == 1.0 and "evader" not in expert.stdout
    assert "success 1.000  failure without violation 0.000" in expert.stdout       # the default outcomes' line

    missing = ldengine("run", "linewalk", "--games", "1", "--quiet", ok=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "no ld adapter" in missing.stderr and str(adapters) in missing.stderr      # the plugin's folder is looked in

    # an adapter the plugin ships: saved into its folder and promoted, ld finds it with no --adapter
    quick = ldengine("finetune", "--task", "linewalk", "--quick", "--out", str(adapters / "select"), "--promote")
    assert "promoted: select is now the default adapter for linewalk" in quick.stdout
    listed = ldengine("adapters", "list", "--task", "linewalk").stdout
    assert re.search(r"select +ld +plugin .*default", listed), listed       # vouched for by the plugin, unsigned
    played = ldengine("run", "linewalk", "--games", "3", "--quiet", "--json", str(tmp_path / "ld.json"))
    assert "| adapter select |" in played.stdout
    ld = json.loads((tmp_path / "ld.json").read_text())
    assert ld["games"] == 3 and ld["failure_with_violation"] == 0.0

    ldengine("eval", "linewalk", "--agents", "expert,top1,ld", "--games", "3", "--out", str(tmp_path / "eval"),
             "--no-figures")
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())["agents"]
    assert list(rows) == ["expert", "top1", "ld"] and rows["expert"]["success"] == 1.0
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "Failure without Violation" in table and "evader" not in table.lower()

    # a new rule: the writer learns the training kinds; the held-out kind is written, verified, played
    ldengine("finetune", "--task", "linewalk", "--method", "write", "--steps", "8", "--train-games", "4",
             "--heldout-games", "1", "--attempts", "2", "--out", str(adapters / "writer"), "--promote")
    trace = tmp_path / "rule.jsonl"
    ruled = ldengine("run", "linewalk", "--emergency", "closed-cell", "--emergency-seed", "5", "--games", "3",
                     "--attempts", "2", "--quiet", "--json", str(tmp_path / "rule.json"), "--trace", str(trace))
    assert "closed-cell: the student writes a function (2 attempts at most)" in ruled.stderr + ruled.stdout
    attempts = re.findall(r"attempt \d: (passed|failed)", ruled.stderr + ruled.stdout)
    assert attempts and "passed" not in attempts[:-1], attempts      # it stops at the first that passes
    result = json.loads((tmp_path / "rule.json").read_text())
    assert result["emergency"] == "closed-cell" and result["games"] == 3
    if "passed" in attempts:        # adopted: its stage is in the pipeline, the function offered at it
        stages = [s for line in trace.read_text().splitlines() for s in json.loads(line).get("selections", [])
                  if s["stage"] == "walker.emergency"]
        assert stages and all(s["oracle"] == "obey_closed_cell" in s["candidates"] for s in stages), stages[:2]
        stored = list((tmp_path / "emergencies").rglob("*.py"))
        assert stored and "obey_closed_cell" in stored[0].read_text()


def test_the_engine_names_no_task_and_no_evader():
    """``ldengine/`` names no registered task and no evader (the built-in plugins are listed
    once, in ``plugins.DEFAULT_PLUGINS``, as the plugins it loads first); "greedy" appears only
    as greedy decoding."""
    found = []
    for path in sorted((ROOT / "ldengine").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if path.name == "plugins.py" and line.startswith("DEFAULT_PLUGINS"):
                continue
            if re.search(r"pursuit|twentyone|pursuer|\blinewalk\b|['\"]greedy['\"]|greedy evader|evader greedy", line,
                         re.IGNORECASE):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found[:40]) + f"\n({len(found)} lines)"
