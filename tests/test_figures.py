"""Figures read at a glance: pursuers told apart, a legend for every mark, marks that stay
visible at capture, the end in words; an outcome chart that draws no interval for an
agent without games; ``ldengine plot`` draws any game of a saved trace."""
import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest
from click.testing import CliRunner
from matplotlib.colors import to_rgb
from matplotlib.container import BarContainer, ErrorbarContainer

from ldengine import play
from ldengine.cli import cli
from ldengine.evaluate import outcome_figure
from ldengine_plugins.pursuit.plot import trajectory_figure
from ldengine_plugins.pursuit.task import GameResult

matplotlib.use("Agg")

# Two pursuers end on the same cell, next to the evader: a capture.
CAPTURE = GameResult(4, 9, "success", 2, 0, pursuers=[[[2, 2], [8, 8], [2, 8]], [[4, 4], [6, 6], [4, 6]],
                                                      [[5, 4], [5, 4], [4, 5]]],
                     evader=[[5, 5], [5, 5], [5, 5]])


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def figure():
    fig = trajectory_figure(CAPTURE, 21, "expert vs greedy evader")
    yield fig
    plt.close(fig)


def pursuer_lines(fig):
    return [line for line in fig.axes[0].get_lines() if line.get_label().startswith("pursuer")]


def test_each_pursuer_has_a_colour_of_its_own(figure):
    """It draws the three pursuers in hues far apart (not three shades of blue), none the evader's."""
    lines = pursuer_lines(figure)
    evader = next(line for line in figure.axes[0].get_lines() if line.get_label() == "evader")
    colours = [to_rgb(line.get_color()) for line in lines] + [to_rgb(evader.get_color())]
    assert len(lines) == 3
    for i, a in enumerate(colours):
        for b in colours[i + 1:]:
            assert sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5 > 0.35, (a, b)


def test_the_legend_names_every_piece_and_the_start_and_end_marks(figure):
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert {"pursuer 1", "pursuer 2", "pursuer 3", "evader", "start", "end"} <= set(labels)


def test_pursuers_sharing_a_cell_at_capture_stay_visible(figure):
    """Pursuers 1 and 2 end on the same cell: their end marks are drawn apart, and the evader's
    mark is a ring under the pursuers' marks."""
    ax = figure.axes[0]
    ends = [tuple(line.get_xydata()[-1]) for line in pursuer_lines(figure)]
    assert len(set(ends)) == 3
    assert all(abs(x - cell[0]) < 0.5 and abs(y - cell[1]) < 0.5 for (x, y), cell in zip(ends, CAPTURE.pursuers[-1]))
    rings = [c for c in ax.collections if len(c.get_offsets()) and tuple(c.get_offsets()[0]) == (5.0, 5.0)
             and len(c.get_facecolors()) == 0]
    pursuer_marks = [c for c in ax.collections if len(c.get_facecolors()) and c.get_zorder() > 3]
    assert rings and pursuer_marks
    assert max(c.get_zorder() for c in rings) < min(c.get_zorder() for c in pursuer_marks)


def test_the_title_says_the_end_in_words(figure):
    title = figure.axes[0].get_title()
    assert "captured after 2 steps" in title and "success" not in title


def test_the_outcome_chart_draws_no_interval_for_an_agent_without_games():
    """An agent with 0 games would show a 0-1 interval: it gets no bars and says "no games"."""
    def agent(games, success):
        return {"games": games, "success": success, "success_ci95": [0.0, 1.0] if not games else [0.8, 1.0],
                **{f"{k}{s}": v for k in ("failure_without_violation", "failure_with_violation")
                   for s, v in (("", 0.0), ("_ci95", [0.0, 1.0] if not games else [0.0, 0.2]))}}
    results = {"manifest": {"config": {"task": "pursuit", "seed": 0, "games": 10, "evader": "greedy"}},
               "agents": {"expert": agent(10, 1.0), "teacher": agent(0, 0.0)}}
    fig = outcome_figure(results)
    ax = fig.axes[0]
    bars = [patch for c in ax.containers if isinstance(c, BarContainer) for patch in c.patches]
    assert len(bars) == 3 and all(abs(bar.get_x() + bar.get_width() / 2) < 0.5 for bar in bars)
    intervals = [seg for c in ax.containers if isinstance(c, ErrorbarContainer)
                 for lines in c.lines[2] for seg in lines.get_segments()]
    assert len(intervals) == 3 and all(abs(seg[0][0]) < 0.5 for seg in intervals)
    ticks = [label.get_text() for label in ax.get_xticklabels()]
    assert ticks == ["expert\n10 games", "teacher\nno games"]
    assert "no games" in [text.get_text() for text in ax.texts]
    plt.close(fig)


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    """Three expert games, played and traced through the Python API."""
    path = tmp_path_factory.mktemp("trace") / "t.jsonl"
    outcome = play("pursuit", agent="expert", games=3, seed=5, trace=str(path))
    return path, outcome.results


def test_a_trace_gives_back_each_game_as_it_was_played(trace, pursuit_task):
    path, results = trace
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for played in results:
        again = pursuit_task.trace_result([r for r in records if r["game"] == played.game])
        assert (again.outcome, again.steps, again.seed) == (played.outcome, played.steps, played.seed)
        assert again.pursuers == [[list(p) for p in step] for step in played.pursuers]
        assert again.evader == [list(e) for e in played.evader]


def test_ldengine_plot_draws_any_game_of_a_trace(trace, tmp_path):
    path, _ = trace
    out = tmp_path / "g2.png"
    result = invoke("plot", path, "--game", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG" and result.output.strip() == f"plot: {out}"
    result = invoke("plot", path)
    assert result.exit_code == 0 and Path(str(path.with_suffix("")) + "-game0.png").is_file()


def one_line_error(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_ldengine_plot_refuses_in_one_line(trace, tmp_path):
    """A missing file, a game the trace does not hold, and a task without figures."""
    path, _ = trace
    assert "no such trace file" in one_line_error(invoke("plot", tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "the file is empty, no game was recorded in it" in one_line_error(invoke("plot", empty))
    assert "holds no game 3 (it holds games 0-2)" in one_line_error(invoke("plot", path, "--game", 3))
    hands = tmp_path / "h.jsonl"
    assert invoke("run", "twentyone", "--agent", "expert", "--hands", 2, "--trace", hands, "--quiet").exit_code == 0
    assert one_line_error(invoke("plot", hands)) == "Error: plots are not available for twentyone"


def test_a_figure_game_from_a_named_start_is_not_called_game_0():
    """``eval --start paper`` draws a game from the named start; its title named it "game 0
    (seed 0)", which games.jsonl records as another game (seed 0's random start)."""
    from dataclasses import replace
    fig = trajectory_figure(replace(CAPTURE, game="from the start 'paper'"), 21, "ld vs greedy evader")
    title = fig.axes[0].get_title()
    plt.close(fig)
    assert "from the start 'paper' (evader seed 9): captured after 2 steps" in title and "game 4" not in title
