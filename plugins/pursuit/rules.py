"""The pursuit game's rules, exactly as the README ("The two tasks: rules") states them.

This module is the engine's referee: pure functions over cells and a small
``PursuitGame`` that applies one step. Agents never call it to decide; they
only propose cells, and the referee judges them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

Cell = tuple[int, int]
REACH = 2          # a pursuer moves up to Manhattan distance 2
MAX_VIOLATIONS = 7  # the 8th violation ends the game
MAX_STEPS = 100
MIN_START_DISTANCE = 3
SUCCESS = "success"
FAIL_NO_VIOLATION = "failure_without_violation"
FAIL_VIOLATION = "failure_with_violation"


def manhattan(a: Cell, b: Cell) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def on_board(cell: Cell, size: int) -> bool:
    return 0 <= cell[0] < size and 0 <= cell[1] < size


def parse_cell(value) -> Cell | None:
    """A proposal as a cell, or None when it cannot be read as one."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        if all(type(v) is int for v in value):
            return (value[0], value[1])
    return None


def is_legal_pursuer_move(src: Cell, dst, evader: Cell, size: int,
                          forbidden: frozenset, rule=None) -> bool:
    """On the board, within reach, not forbidden, not the evader's cell, and allowed by
    the emergency ``rule`` in force, if any (``rule.allows(piece, src, dst)``)."""
    cell = parse_cell(dst)
    return (cell is not None and on_board(cell, size)
            and manhattan(src, cell) <= REACH
            and cell not in forbidden and cell != evader
            and (rule is None or rule.allows("pursuer", src, cell)))


def evader_moves(evader: Cell, pursuers, size: int, forbidden: frozenset, rule=None) -> list[Cell]:
    """The evader's legal cells in the tie-break order stay, x+1, x-1, y+1, y-1."""
    x, y = evader
    order = [(x, y), (x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)]
    blocked = set(pursuers) | forbidden
    return [c for c in order if on_board(c, size) and c not in blocked
            and (rule is None or rule.allows("evader", evader, c))]


def captured(evader: Cell, pursuers) -> bool:
    return all(manhattan(p, evader) <= 1 for p in pursuers)


def random_start(rng: random.Random, size: int, forbidden: frozenset = frozenset(),
                 n_pursuers: int = 3) -> tuple[list[Cell], Cell]:
    """Distinct free cells, every pursuer at distance >= 3 from the evader."""
    free = [(x, y) for x in range(size) for y in range(size) if (x, y) not in forbidden]
    while True:
        cells = rng.sample(free, n_pursuers + 1)
        evader, pursuers = cells[-1], cells[:-1]
        if all(manhattan(p, evader) >= MIN_START_DISTANCE for p in pursuers):
            return pursuers, evader


@dataclass
class StepResult:
    """What one pursuer move did (the trace's "pursuers" record)."""
    proposed: list
    positions: list[Cell]
    illegal: list[bool]


@dataclass
class PursuitGame:
    """One game's state; ``pursuer_step`` and ``evader_step`` apply the rules."""
    size: int
    pursuers: list[Cell]
    evader: Cell
    forbidden: frozenset = frozenset()
    rule: Any = None        # an emergency in force (``Instance``): its new rule binds every move
    steps: int = 0
    violations: int = 0
    outcome: str | None = None
    history: list = field(default_factory=list)

    def state(self) -> dict:
        """The state as plain data, the decision loop's o_0. An emergency appears as
        ``"emergency": {"name", "rule", "params"}``; the teacher's functions do not read it."""
        state = {"size": self.size, "step": self.steps, "reach": REACH,
                 "pursuers": [list(p) for p in self.pursuers],
                 "evader": list(self.evader),
                 "forbidden": sorted(list(c) for c in self.forbidden)}
        if self.rule is not None:
            state["emergency"] = self.rule.state()
        return state

    def pursuer_step(self, proposals) -> StepResult:
        proposals = _as_three(proposals, len(self.pursuers))
        illegal, moved = [], []
        for src, dst in zip(self.pursuers, proposals):
            ok = is_legal_pursuer_move(src, dst, self.evader, self.size, self.forbidden, self.rule)
            illegal.append(not ok)
            moved.append(parse_cell(dst) if ok else src)
        self.pursuers = moved
        self.steps += 1
        self.violations += sum(illegal)
        # The rules: violations are counted first (the 8th ends the game), then capture is checked.
        if self.violations > MAX_VIOLATIONS:
            self.outcome = FAIL_VIOLATION
        elif captured(self.evader, self.pursuers):
            self.outcome = SUCCESS
        return StepResult(proposals, list(moved), illegal)

    def evader_step(self, choose) -> Cell:
        """Moves the evader with ``choose(legal_cells, game)``; checks capture and the step limit."""
        legal = evader_moves(self.evader, self.pursuers, self.size, self.forbidden, self.rule)
        if legal:
            cell = parse_cell(choose(legal, self))  # a policy may answer [x, y]
            self.evader = cell if cell in legal else legal[0]
        if captured(self.evader, self.pursuers):
            self.outcome = SUCCESS
        elif self.steps >= MAX_STEPS:
            self.outcome = FAIL_NO_VIOLATION
        return self.evader


def _as_three(proposals, n: int) -> list:
    """Pads or truncates an agent's answer to one proposal per pursuer (missing ones are illegal)."""
    if not isinstance(proposals, (list, tuple)):
        proposals = []
    proposals = list(proposals)[:n]
    return proposals + [None] * (n - len(proposals))
