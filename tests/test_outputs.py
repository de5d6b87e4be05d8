"""Output paths are checked before any work: a bad one costs one line, not the games played."""
import json
import sys

import pytest
from click.testing import CliRunner

from ldengine.cli import cli

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and /sys")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@linux
@pytest.mark.parametrize("option, path, words", [
    ("--json", "/sys/r.json", "--json /sys/r.json: cannot write in /sys"),
    ("--trace", "/proc/x.jsonl", "--trace /proc/x.jsonl: cannot write in /proc"),
    ("--audit", "/sys/a.jsonl", "--audit /sys/a.jsonl: cannot write in /sys"),
    ("--plot", "p.txt", "--plot p.txt: give a file ending in .png"),
])
def test_it_refuses_an_unwritable_output_before_the_first_game(tmp_path, option, path, words):
    """It answers a path it cannot write with one line, before a game is played or the
    trace is opened (the user's report: the summary printed, then a traceback)."""
    trace = tmp_path / "t.jsonl"
    extra = () if option == "--trace" else ("--trace", trace)
    result = invoke("run", "pursuit", "--agent", "expert", "--games", 2, option, path, *extra)
    assert words in one_error_line(result)
    assert not trace.exists() and "success" not in result.output


def test_it_refuses_a_plot_for_a_task_that_draws_none(tmp_path):
    """It refuses --plot up front for a task without a plot (twentyone plays every hand otherwise)."""
    plot = tmp_path / "tw.png"
    result = invoke("run", "twentyone", "--agent", "expert", "--hands", 20, "--plot", plot)
    assert one_error_line(result) == "Error: --plot: plots are not available for twentyone"
    assert not plot.exists()


def test_it_creates_missing_folders_of_an_output_and_writes_there(tmp_path):
    """It creates the folders an output path names, and the run writes the file there."""
    out = tmp_path / "new" / "deeper" / "r.json"
    result = invoke("run", "pursuit", "--agent", "expert", "--json", out, "--plot", tmp_path / "new" / "g.svg")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["games"] == 1
    assert (tmp_path / "new" / "g.svg").read_text().lstrip().startswith("<?xml")


@linux
@pytest.mark.parametrize("args", [
    ["eval", "pursuit", "--agents", "expert", "--out", "/proc/e"],
    ["finetune", "--task", "pursuit", "--out", "/proc/a"],
    ["finetune", "--task", "pursuit", "--method", "write", "--out", "/sys/w"],
    ["finetune", "--task", "pursuit", "--method", "kd", "--out", "/proc/k"],
    ["emergencies", "measure", "--kinds", "wall", "--out", "/proc/m"],
])
def test_eval_and_finetune_refuse_an_unwritable_out_before_working(args):
    """It checks the --out folder of eval, finetune and emergencies measure first: one line,
    no game, no writing and no training."""
    assert "--out /" in one_error_line(CliRunner().invoke(cli, args, catch_exceptions=False))

