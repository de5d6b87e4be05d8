"""Reading a saved trace (``ldengine run --trace``) back: any game of it, drawn again.

A trace is JSON Lines, each game's records together (the runner writes whole
games only); the first record of a game names its task. A task that can draw
a game has ``trace_result(records)`` (the game rebuilt from its records) and
``plot(result, path, title)``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ldengine.errors import LDEngineError

if TYPE_CHECKING:
    from ldengine.registry import Registry


def read_trace(path: str | Path) -> list[dict]:
    """Every record of the trace at ``path``; a missing or unreadable file is the user's error."""
    path = Path(path)
    if not path.is_file():
        raise LDEngineError(f"{path}: no such trace file (write one with ldengine run TASK --trace FILE)")
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise LDEngineError(f"{path}, line {number}: not JSON (is it a trace from ldengine run --trace?)") \
                    from None
    if not records:
        raise LDEngineError(f"{path}: the file is empty, no game was recorded in it (a run stopped before its first "
                            "game ends writes nothing; ldengine run TASK --trace FILE writes one)")
    if not all(isinstance(r, dict) and "game" in r for r in records):
        raise LDEngineError(f"{path}: not a trace of games (ldengine run TASK --trace FILE writes one)")
    return records


def trace_task(records: list[dict]) -> str:
    """The task the trace's games were played in."""
    task = records[0].get("task")
    if not task:
        raise LDEngineError("the trace's first record does not name its task (written by an older ldengine? "
                            "run the games again with --trace)")
    return task


def game_records(records: list[dict], game: int) -> list[dict]:
    """The records of game ``game``; a game the trace does not hold is the user's error."""
    games = sorted({r["game"] for r in records})
    mine = [r for r in records if r["game"] == game]
    if not mine:
        held = f"games {games[0]}-{games[-1]}" if games == list(range(games[0], games[-1] + 1)) \
            else "games " + ", ".join(map(str, games[:10])) + (" ..." if len(games) > 10 else "")
        raise LDEngineError(f"the trace holds no game {game} (it holds {held})")
    return mine


def plot_game(registry: Registry, path: str | Path, game: int, out: str | Path) -> str:
    """Draw game ``game`` of the trace at ``path`` to ``out`` (PNG); returns the title drawn."""
    records = read_trace(path)
    name = trace_task(records)
    task = registry.task(name)
    if task.plot is None or task.trace_result is None:
        raise LDEngineError(f"plots are not available for {name}")
    mine = game_records(records, game)
    head = mine[0]
    opponent = f" vs {head['evader_policy']} evader" if head.get("evader_policy") else ""
    title = f"{head.get('agent') or 'agent'}{opponent} ({Path(path).name})"
    task.plot(task.trace_result(mine), str(out), title)
    return title
