"""Evader policies: ``greedy`` (the default) and ``random``."""
from __future__ import annotations

import random

from ldengine_plugins.pursuit.rules import Cell, manhattan


def greedy(legal: list[Cell], pursuers, rng: random.Random) -> Cell:
    """Maximise the distance to the nearest pursuer, then the sum; ties to the first."""
    def score(cell: Cell) -> tuple[int, int]:
        dists = [manhattan(cell, p) for p in pursuers]
        return (min(dists), sum(dists))
    best = legal[0]
    for cell in legal[1:]:
        if score(cell) > score(best):
            best = cell
    return best


def uniform(legal: list[Cell], pursuers, rng: random.Random) -> Cell:
    """A seeded uniformly random legal cell."""
    return rng.choice(legal)
