"""A game's trajectories, drawn like the paper's Figure 6, to be read at a glance.

Each pursuer has its own hue (pursuers are "blue" in the rules, but three near-identical
blues cannot be told apart) and a small offset inside its cell, so pursuers that share a
cell, or end next to the evader, stay visible. The evader is drawn as a ring under them.
"""
from __future__ import annotations

PURSUER_COLOURS = ("tab:blue", "tab:green", "tab:purple")
EVADER_COLOUR = "tab:orange"
# Where in its cell each pursuer is drawn: pursuers may share a cell, and their marks must not hide each other.
OFFSETS = ((-0.2, 0.17), (0.2, 0.17), (0.0, -0.22))
OUTCOME_WORDS = {
    "success": "captured after {steps} steps",
    "failure_without_violation": "not captured in {steps} steps",
    "failure_with_violation": "stopped by {violations} violations after {steps} steps",
}


def plot_trajectories(result, size: int, path: str, title: str = "") -> None:
    import matplotlib.pyplot as plt
    fig = trajectory_figure(result, size, title)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def trajectory_figure(result, size: int, title: str = ""):
    """The figure (not saved): trails, start and end marks, closed cells, a legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    closed = getattr(result, "forbidden", ())
    if closed:      # cells an emergency closed (e.g. the restricted area), shaded
        ax.scatter([c[0] for c in closed], [c[1] for c in closed], marker="s", s=90, color="tab:red",
                   alpha=0.25, label="closed cells")
    _evader_trail(ax, result.evader)
    for i in range(len(result.pursuers[0])):
        _pursuer_trail(ax, [step[i] for step in result.pursuers], i)
    ax.scatter([], [], marker="o", s=60, facecolor="white", edgecolor="black", label="start")
    ax.scatter([], [], marker="*", s=140, color="grey", edgecolor="black", label="end")
    _board(ax, size)
    ax.set_title(f"{title}\n{outcome_words(result)}" if title else outcome_words(result))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def outcome_words(result) -> str:
    """The game's end in words, e.g. "game 3 (seed 3): captured after 9 steps"; a game named
    by words (a figure's game from a named start) keeps its name: "from the start 'paper'
    (evader seed 0): captured after 9 steps"."""
    words = OUTCOME_WORDS.get(result.outcome, "{outcome} after {steps} steps")
    end = words.format(steps=result.steps, violations=result.violations, outcome=result.outcome)
    if isinstance(result.game, str):
        return f"{result.game} (evader seed {result.seed}): {end}"
    return f"game {result.game} (seed {result.seed}): {end}"


def _pursuer_trail(ax, cells, i: int) -> None:
    colour, (dx, dy) = PURSUER_COLOURS[i % len(PURSUER_COLOURS)], OFFSETS[i % len(OFFSETS)]
    xs, ys = [c[0] + dx for c in cells], [c[1] + dy for c in cells]
    ax.plot(xs, ys, "-", color=colour, alpha=0.8, linewidth=1.6, label=f"pursuer {i + 1}")
    ax.scatter(xs[0], ys[0], marker="o", s=60, color=colour, edgecolor="black", zorder=4)
    ax.scatter(xs[-1], ys[-1], marker="*", s=140, color=colour, edgecolor="black", zorder=5)


def _evader_trail(ax, cells) -> None:
    xs, ys = [c[0] for c in cells], [c[1] for c in cells]
    ax.plot(xs, ys, "--", color=EVADER_COLOUR, linewidth=1.6, label="evader", zorder=2)
    ax.scatter(xs[0], ys[0], marker="o", s=200, facecolor="none", edgecolor=EVADER_COLOUR, linewidth=2, zorder=3)
    ax.scatter(xs[-1], ys[-1], marker="o", s=260, facecolor="none", edgecolor=EVADER_COLOUR, linewidth=2.5, zorder=3)
    ax.scatter(xs[-1], ys[-1], marker="*", s=90, color=EVADER_COLOUR, edgecolor="black", zorder=3)


def _board(ax, size: int) -> None:
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(-0.5, size - 0.5)
    ax.set_xticks(range(0, size, 2))
    ax.set_yticks(range(0, size, 2))
    ax.grid(True, linewidth=0.3)
    ax.set_aspect("equal")
