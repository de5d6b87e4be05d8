"""Games on several processes: each worker loads the agent once and plays whole games.

``ldengine eval --workers N``: the games an agent has left are dealt to N worker processes
(started with ``spawn``, so no model or thread state is copied from the parent), each of
which builds the registry, the task (with the emergency in force) and the agent once, with
torch limited to its share of the cores, and plays games in small chunks; the parent writes
each game's row as its chunk comes back, so Ctrl-C keeps every finished game. A game's moves
depend only on its seed and the agent's choices, which do not depend on the process, so the
rows are those of one process (only the cost columns differ); the agents' statistics are
summed over the workers.
"""
from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from typing import Iterator

from ldengine.contracts import TaskBase
from ldengine.emergency.rule import under_emergency
from ldengine.models.loading import available_cores
from ldengine.registry import Registry
from ldengine.runner import Emitter, Played, build_agent, play_games

CHUNKS_PER_WORKER = 4       # games are dealt in this many chunks per worker, so that none idles at the end


@dataclass(frozen=True)
class Games:
    """What a worker needs to build the agent and play (it crosses a process boundary)."""
    task: str
    agent: str
    evader: str | None          # None: a task played against no evader
    emergency: str | None = None
    emergency_seed: int = 0
    options: dict = field(default_factory=dict)
    version: str | None = None
    batch: int | None = None


def game_row(agent: str, played: Played, task: TaskBase) -> dict:
    """A game's line of ``games.jsonl``: the agent, the game and its seed, its outcome (or
    error; ``task.record``), and what it cost."""
    row: dict = {"agent": agent, "game": played.game, "seed": played.seed}
    row.update({"outcome": "error", "error": played.error} if played.error else task.record(played.result))
    row.update(played.cost())
    return row


_here: dict = {}            # the worker's own task, evader and agent (set by ``_start``)


def _start(games: Games, threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    registry = Registry.load()
    task = under_emergency(registry, registry.task(games.task), games.emergency, games.emergency_seed)
    agent, _ = build_agent(registry, task, games.agent, games.options, version=games.version)
    _here.update(task=task, agent=agent, policy=registry.policy(games.evader), games=games)


def _play(chunk: list[tuple[int, int]]) -> tuple[int, list[dict], dict]:
    """(this worker's pid, the rows of ``chunk``'s games, the agent's statistics so far)."""
    task, agent, policy, games = _here["task"], _here["agent"], _here["policy"], _here["games"]
    rows = [game_row(games.agent, played, task)
            for played in play_games(task, agent, chunk, policy, Emitter(None), games.agent,
                                     games.evader or "", games.batch)]
    stats = agent.stats() if callable(getattr(agent, "stats", None)) else {}
    return os.getpid(), rows, stats


def play_on_workers(games: Games, todo: list[tuple[int, int]], workers: int,
                    stats: dict | None = None) -> Iterator[dict]:
    """Each game of ``todo`` ((index, seed) pairs) played on one of ``workers`` processes;
    yields its row as its chunk ends. ``stats`` (when given) is filled with each worker's
    latest statistics, by process id (``merge_stats`` sums them)."""
    workers = max(1, min(workers, len(todo)))
    # small chunks keep every worker busy to the end; a chunk still fills the agent's batch
    size = max(1, len(todo) // (workers * CHUNKS_PER_WORKER), min(games.batch or 1, -(-len(todo) // workers)))
    chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
    threads = max(1, available_cores() // workers)
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start, initargs=(games, threads)) as pool:
        for pid, rows, latest in pool.imap_unordered(_play, chunks):
            if stats is not None:
                stats[pid] = latest
            yield from rows


def merge_stats(per_worker: list[dict]) -> dict:
    """The agents' statistics over all workers: counts summed, ``selection_accuracy``
    weighted by each worker's ``selections``, dicts joined, anything else the first's."""
    merged: dict = {}
    for stats in per_worker:
        for key, value in stats.items():
            if key == "selection_accuracy":
                continue
            if key not in merged:
                merged[key] = dict(value) if isinstance(value, dict) else value
            elif isinstance(value, bool) or not isinstance(value, (int, float, dict)):
                continue
            elif isinstance(value, dict) and isinstance(merged[key], dict):
                merged[key].update(value)
            elif isinstance(value, (int, float)) and isinstance(merged[key], (int, float)):
                merged[key] += value
    weighted = [(s["selection_accuracy"], s.get("selections") or 0) for s in per_worker
                if s.get("selection_accuracy") is not None]
    total = sum(n for _, n in weighted)
    if weighted:
        merged["selection_accuracy"] = (sum(a * n for a, n in weighted) / total) if total else weighted[0][0]
    return merged
