"""The engine names no task and no evader of its own: the task says which evader its games are
played against (pursuit: greedy; twentyone: none), and --task defaults to the first task
registered (pursuit, the first built-in plugin's)."""
import json

from click.testing import CliRunner

from ldengine.cli import cli
from ldengine.contracts import task_evader


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
