"""The engine names no task and no evader of its own: the task says which evader its games are
played against (pursuit: greedy; twentyone: none), and --task defaults to the first task
registered (pursuit, the first built-in plugin's)."""
import json
import pickle

import pytest
from click.testing import CliRunner

from ldengine.cli import cli
from ldengine.contracts import OUTCOMES, TaskBase, adapt, task_evader


def run(tmp_path, monkeypatch, *args):
    """``ldengine run ARGS --json F`` with the data folder in ``tmp_path``: (result, summary)."""
    monkeypatch.setenv("LDENGINE_DATA", str(tmp_path / "data"))
    out = tmp_path / "summary.json"
    result = CliRunner().invoke(cli, ["run", *args, "--agent", "expert", "--quiet", "--json", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text())


def test_the_evader_is_the_users_else_the_tasks_else_none(registry):
    pursuit, twentyone = registry.get("tasks", "pursuit").obj, registry.get("tasks", "twentyone").obj
    assert task_evader(pursuit) == "greedy"
    assert task_evader(pursuit, "random") == "random"
    assert task_evader(twentyone) is None
    assert registry.policy(task_evader(twentyone)) is None
    assert registry.policy(task_evader(pursuit)) is registry.get("evaders", "greedy").obj


def test_the_default_task_is_the_first_registered(registry):
    assert registry.default_task() == next(iter(registry.tasks)) == "pursuit"


def test_twentyone_plays_against_no_evader(tmp_path, monkeypatch):
    result, summary = run(tmp_path, monkeypatch, "twentyone", "--games", "2")
    assert summary["task"] == "twentyone" and summary["games"] == 2
    assert summary.get("evader") is None
    assert "greedy" not in result.output and "evader" not in result.output


def test_pursuit_still_plays_against_greedy(tmp_path, monkeypatch):
    result, summary = run(tmp_path, monkeypatch, "pursuit", "--games", "2")
    assert summary["task"] == "pursuit" and summary["games"] == 2
    assert summary["evader"] == "greedy"
    assert "| evader greedy |" in result.output


class PlainTask:
    """A task written without ``TaskBase``: only the required members, a unit and a rule change."""
    name, description, pipeline, rules, unit = "plain", "a walk", ["walker.decide"], "walk to the end", "walk"
    emergency = None

    def play(self, agent, game_index, seed, evader, emit, agent_name="", evader_name=""):
        return None

    def summarize(self, results):
        return {"games": len(results)}

    def summarize_state(self, state):
        return str(state)

    def with_emergency(self, emergency):
        ruled = PlainTask()
        ruled.emergency = emergency
        return ruled


def test_a_task_without_taskbase_is_seen_with_its_defaults(registry):
    seen = adapt(PlainTask())
    assert seen.unit == "walk" and seen.summarize([1, 2]) == {"games": 2}      # its own members
    assert seen.evader is None and seen.uses_evader is True and seen.size is None
    assert dict(seen.starts) == {} and dict(seen.stages) == {} and seen.fact_families == ()
    assert seen.outcome_columns == OUTCOMES and seen.eval_note is None and seen.text is None
    assert seen.game_steps is None and seen.plot is None and seen.custom_emergency is None
    ruled = seen.with_emergency("no entry")         # a task derived under a rule is seen the same way
    assert ruled.emergency == "no entry" and ruled.unit == "walk" and ruled.plot is None
    assert pickle.loads(pickle.dumps(seen)).unit == "walk"     # workers get tasks pickled
    with pytest.raises(AttributeError):
        seen.no_such_member
    pursuit = registry.task("pursuit")
    assert adapt(pursuit) is pursuit and isinstance(pursuit, TaskBase) and pursuit.size == 21
    assert registry.task("twentyone").outcome_columns != OUTCOMES
