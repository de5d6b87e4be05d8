"""A game's trajectories, drawn like the paper's Figure 6."""
from __future__ import annotations

PURSUER_COLOURS = ("tab:blue", "royalblue", "navy")


def plot_trajectories(result, size: int, path: str, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    closed = getattr(result, "forbidden", ())
    if closed:      # cells an emergency closed (e.g. the restricted area), shaded
        ax.scatter([c[0] for c in closed], [c[1] for c in closed], marker="s", s=90, color="tab:red",
                   alpha=0.25, label="closed cells")
    for i in range(len(result.pursuers[0])):
        _trail(ax, [step[i] for step in result.pursuers], PURSUER_COLOURS[i % 3], f"pursuer {i + 1}")
    _trail(ax, result.evader, "tab:orange", "evader")
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(-0.5, size - 0.5)
    ax.set_xticks(range(0, size, 2))
    ax.set_yticks(range(0, size, 2))
    ax.grid(True, linewidth=0.3)
    ax.set_aspect("equal")
    summary = f"game {result.game} (seed {result.seed}): {result.outcome}, {result.steps} steps"
    ax.set_title(f"{title}\n{summary}" if title else summary)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _trail(ax, cells, colour: str, label: str) -> None:
    xs, ys = [c[0] for c in cells], [c[1] for c in cells]
    ax.plot(xs, ys, "-", color=colour, alpha=0.7, label=label)
    ax.scatter(xs[0], ys[0], marker="o", s=80, color=colour, edgecolor="black", zorder=3)
    ax.scatter(xs[-1], ys[-1], marker="*", s=160, color=colour, edgecolor="black", zorder=3)
