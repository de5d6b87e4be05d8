"""What a written rule function forbids, drawn as a board map for the user to judge.

The map comes from running the function on every single move of the board in the
isolated worker (the kind's ``move_map``, which knows its board): a cell is closed when
every move into it is dropped, partly closed when some are (the rule depends on where the
move starts).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ldengine.emergency.write import Attempt
    from ldengine.sandbox.isolated import IsolatedSandbox

CLOSED, PARTLY, OPEN = "#", "+", "."


@dataclass
class BoardMap:
    """Per destination cell: how many of the moves into it the function drops, of how many."""
    size: int
    dropped: dict = field(default_factory=lambda: defaultdict(int))
    offered: dict = field(default_factory=lambda: defaultdict(int))
    forbidden_moves: list = field(default_factory=list)     # (src, dst) pairs the function drops
    all_moves: list = field(default_factory=list)           # every (src, dst) pair it was given

    @classmethod
    def of(cls, moves: list[tuple], size: int) -> "BoardMap":
        board = cls(size)
        for src, dst, kept in moves:
            board.offered[dst] += 1
            board.all_moves.append((src, dst))
            if not kept:
                board.dropped[dst] += 1
                board.forbidden_moves.append((src, dst))
        return board

    @property
    def moves(self) -> int:
        return len(self.all_moves)

    def mark(self, cell: tuple) -> str:
        dropped, offered = self.dropped.get(cell, 0), self.offered.get(cell, 0)
        if not dropped:
            return OPEN
        return CLOSED if dropped == offered else PARTLY

    @property
    def closed_cells(self) -> int:
        return sum(self.mark(c) == CLOSED for c in self.offered)

    def summary(self) -> str:
        n = len(self.forbidden_moves)
        return (f"forbids {n:,} of the board's {self.moves:,} single moves ({100 * n / max(1, self.moves):.1f}%): "
                f"{self.closed_cells} cells closed ({CLOSED}), "
                f"{sum(self.mark(c) == PARTLY for c in self.offered)} closed from some sides ({PARTLY})")

    def text(self, allowed: tuple = (), forbidden: tuple = ()) -> str:
        """The board, y from the top row down to 0, x from 0 rightwards; the user's example
        moves' destinations drawn as A (allowed) and F (forbidden)."""
        marks = {tuple(dst): "A" for _, dst in allowed}
        marks.update({tuple(dst): "F" for _, dst in forbidden})
        width = len(str(self.size - 1))
        lines = []
        for y in range(self.size - 1, -1, -1):
            row = " ".join(marks.get((x, y), self.mark((x, y))) for x in range(self.size))
            lines.append(f"{y:>{width}} {row}")
        tens = " ".join(str(x // 10) if x >= 10 else " " for x in range(self.size))
        ones = " ".join(str(x % 10) for x in range(self.size))
        lines += [" " * width + " " + tens, " " * width + " " + ones]
        legend = (f"{CLOSED} no move may enter the cell   {PARTLY} some moves into it are forbidden   "
                  f"{OPEN} allowed" + ("   A/F your --allow/--forbid examples" if marks else ""))
        return "\n".join(lines + [legend])

    def png(self, path: str | Path, title: str = "", allowed: tuple = (), forbidden: tuple = ()) -> Path:
        """The same map as an image (matplotlib): closed cells dark, partly closed grey, with a
        legend; the user's example moves' destinations marked A (allowed) and F (forbidden)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
        shade = {OPEN: 0.0, PARTLY: 0.5, CLOSED: 1.0}
        grid = [[shade[self.mark((x, y))] for x in range(self.size)] for y in range(self.size)]
        fig, ax = plt.subplots(figsize=(6.5, 5))
        ax.imshow(grid, origin="lower", cmap="Greys", vmin=0, vmax=1)
        for moves, letter, colour in ((allowed, "A", "tab:green"), (forbidden, "F", "tab:red")):
            for _, (x, y) in moves:
                ax.text(x, y, letter, ha="center", va="center", fontsize=8, fontweight="bold", color=colour)
        handles = [Patch(facecolor="black", edgecolor="grey", label="no move may enter"),
                   Patch(facecolor="grey", edgecolor="grey", label="some moves into it forbidden"),
                   Patch(facecolor="white", edgecolor="grey", label="allowed")]
        if allowed or forbidden:
            handles.append(Patch(facecolor="white", edgecolor="white", label="A / F: your --allow / --forbid"))
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        ax.set_xticks(range(0, self.size, 2))
        ax.set_yticks(range(0, self.size, 2))
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(title[:90] + ("..." if len(title) > 90 else ""), fontsize=8)
        path = Path(path)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return path


def attempt_png(path: str | Path, number: int) -> Path:
    """Where attempt ``number``'s map goes: the path given for the first map drawn, and
    ``NAME-attemptN.png`` beside it for each later one (one file each, none overwritten)."""
    path = Path(path)
    return path if number <= 1 else path.with_name(f"{path.stem}-attempt{number}{path.suffix or '.png'}")


class BoardJudge:
    """``write_function``'s accept hook: each function that passed its checks is run on every
    move of the board in the same isolated worker and its map shown (``echo``); one that
    forbids no move or every move is refused at once, and the rest are put to ``ask`` (the
    user; None: accepted as shown, e.g. ``--yes``). ``board`` holds the accepted one's map.
    ``moves(source, name, sandbox, template)``: the kind's ``move_map``, ``(src, dst, kept)`` for
    every single move of its board, or the error of the first call that fails."""

    def __init__(self, name: str, template: dict, echo,
                 moves: Callable[[str, str, IsolatedSandbox, dict], list | str],
                 ask=None, png: str | None = None, examples: tuple = ((), ()), title: str = ""):
        self.name, self.template, self.echo, self.ask, self.moves = name, template, echo, ask, moves
        self.png, self.examples, self.title = png, examples, title
        self.board: BoardMap | None = None
        self.drawn = 0          # maps drawn to PNG files so far

    def __call__(self, attempt: Attempt, sandbox: IsolatedSandbox) -> str | None:
        moves = self.moves(attempt.source, self.name, sandbox, self.template)
        if isinstance(moves, str):
            return self._refuse(attempt, f"fails on the board's moves: {moves}")
        board = BoardMap.of(moves, int(self.template["size"]))
        self.echo(board.text(*self.examples))
        self.echo(board.summary())
        if self.png:
            self.drawn += 1
            title = f"attempt {attempt.number}: {self.title}" if self.title else f"attempt {attempt.number}"
            self.echo(f"map drawn to {board.png(attempt_png(self.png, self.drawn), title, *self.examples)}")
        if not board.forbidden_moves:
            return self._refuse(attempt, "forbids no move, so it is no rule")
        if len(board.forbidden_moves) == board.moves:
            return self._refuse(attempt, "forbids every move")
        if self.ask is not None and not self.ask():
            return self._refuse(attempt, "the user did not confirm its board map")
        self.board = board
        return None

    def _refuse(self, attempt, why: str) -> str:
        self.echo(f"attempt {attempt.number} refused: {why}")
        return why
