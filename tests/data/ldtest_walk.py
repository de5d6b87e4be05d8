"""A third task, written from the plugin docs alone, that the engine has never heard of: a
walker steps left or right along a line of cells to reach a goal. Two stages (``walker.moves``,
``walker.decide``), two alternatives at the decide stage (their ``When:`` read from the state),
two kinds of new rule, a shipped adapter folder. tests/test_third_task.py installs it as a
plugin (an entry point in group ``ldengine``) and plays it through the command line."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ldengine.contracts import TaskBase
from ldengine.hookspecs import hookimpl
from ldengine.taskkit import play_through, selections_record

SIZE = 9
RULES = ("Walk: a walker stands on a line of 9 cells (0 to 8) and must reach the goal cell within 12 steps. "
         "Each step it moves one cell left or right, or stays; leaving the line is a violation.")
STAGES = {"walker.moves": "list the moves that keep the walker on the line",
          "walker.decide": "choose the move toward the goal"}
STAGE, AFTER = "walker.emergency", "walker.moves"

FUNCTIONS = '''
VERSION = "1.0.0"


def list_moves(obs):
    """List the walker's moves that stay on the line.

    Stage: walker.moves
    Reads: obs["position"], obs["size"]
    Returns: obs with "moves": [name, new position] pairs for "left" and "right" that stay on the line
    Rules: the walker steps one cell left or right along a line of obs["size"] cells and may not leave it.
    Example:
        >>> list_moves({"position": 0, "size": 9})
        {'position': 0, 'size': 9, 'moves': [['right', 1]]}
    """
    out = dict(obs)
    out["moves"] = [[name, obs["position"] + d] for name, d in (("left", -1), ("right", 1))
                    if 0 <= obs["position"] + d < obs["size"]]
    return out


def step_right(obs):
    """Step right, toward a goal on the right, if the moves allow it.

    Stage: walker.decide
    When: the goal is to the right of the walker
    Reads: obs["moves"]
    Returns: "right" when it is among the moves, else "stay"
    Rules: the walker must reach the goal cell.
    Example:
        >>> step_right({"moves": [["left", 2], ["right", 4]]})
        'right'
    """
    return "right" if any(m[0] == "right" for m in obs["moves"]) else "stay"


def when_step_right(obs):
    return obs["goal"] > obs["position"]


def step_left(obs):
    """Step left, toward a goal on the left, if the moves allow it.

    Stage: walker.decide
    When: the goal is to the left of the walker
    Reads: obs["moves"]
    Returns: "left" when it is among the moves, else "stay"
    Rules: the walker must reach the goal cell.
    Example:
        >>> step_left({"moves": [["left", 2], ["right", 4]]})
        'left'
    """
    return "left" if any(m[0] == "left" for m in obs["moves"]) else "stay"


def when_step_left(obs):
    return obs["goal"] < obs["position"]
'''


@dataclass
class WalkResult:
    game: int
    seed: int
    outcome: str
    steps: int
    violations: int


class WalkTask(TaskBase):
    """The walk; ``with_emergency(instance)`` gives it under a new rule (the referee applies it)."""
    name = "linewalk"
    description = "a walker steps along a line of 9 cells to its goal"
    pipeline = list(STAGES)
    adapters = Path(__file__).resolve().parent / "walk_adapters"     # the adapters this plugin ships

    def __init__(self, emergency=None):
        self.emergency = emergency

    def with_emergency(self, emergency):
        return WalkTask(emergency)

    @property
    def rules(self) -> str:
        return RULES if self.emergency is None else f"{RULES} New rule: {self.emergency.description}"

    @property
    def stages(self) -> dict:
        if self.emergency is None:
            return STAGES
        return {"walker.moves": STAGES["walker.moves"], STAGE: "drop the moves the new rule forbids",
                "walker.decide": STAGES["walker.decide"]}

    def play(self, agent, game_index, seed, evader=None, emit=lambda r: None, agent_name="", evader_name="",
             start=None):
        return play_through(agent, self.game_steps(game_index, seed, evader, emit, agent_name))

    def game_steps(self, game_index, seed, evader=None, emit=lambda r: None, agent_name="", evader_name="",
                   start=None):
        rng = random.Random(seed)
        position, goal = rng.sample(range(SIZE), 2)
        emit({"type": "game", "task": self.name, "game": game_index, "seed": seed, "position": position,
              "goal": goal, "agent": agent_name})
        violations = steps = 0
        while position != goal and steps < 12:
            state = {"position": position, "goal": goal, "size": SIZE, "step": steps}
            if self.emergency is not None:
                state["emergency"] = self.emergency.state()
            action, functions, *selections = yield state
            steps += 1
            target = position + {"left": -1, "right": 1, "stay": 0}.get(action if isinstance(action, str) else "", SIZE)
            if not 0 <= target < SIZE or (self.emergency and target != position
                                          and not self.emergency.allows("walker", position, target)):
                violations += 1
            else:
                position = target
            emit({"type": "step", "game": game_index, "step": steps, "action": str(action), "position": position,
                  "functions": list(functions), **selections_record(selections)})
        outcome = ("failure_with_violation" if violations else
                   "success" if position == goal else "failure_without_violation")
        emit({"type": "end", "game": game_index, "outcome": outcome, "steps": steps, "violations": violations})
        return WalkResult(game_index, seed, outcome, steps, violations)

    def summarize(self, results) -> dict:
        n = len(results)
        return {"games": n, **{key: sum(r.outcome == key for r in results) / n if n else 0.0
                               for key, _ in self.outcome_columns},
                "average_steps": sum(r.steps for r in results) / n if n else 0.0,
                "violations": sum(r.violations for r in results)}

    def summarize_state(self, state) -> str:
        if not isinstance(state, dict) or "goal" not in state:
            return "no state"
        side = "right" if state["goal"] > state["position"] else "left"
        return f"the goal is to the {side} of the walker; moves {'listed' if 'moves' in state else 'not listed'}"


@dataclass(frozen=True)
class Closed:
    """A new rule: cells the walker may not step onto (``forbids(cell, params)``)."""
    name: str
    text: str                       # the rule in words, with {param} fields
    cond: str                       # the allowed destination ``x``, Python text with {param} fields
    rule: Callable[[int, dict], bool]   # the same condition, as the referee applies it
    draw: Callable[[random.Random], dict]
    split: str = "eval"
    example: bool = False
    task: str = "linewalk"
    stage: str = STAGE
    after: str = AFTER

    def params(self, seed: int, size: int = SIZE) -> dict:
        return self.draw(random.Random(f"{self.name}:{seed}"))

    def describe(self, params: dict) -> str:
        return self.text.format(**params)

    def allows(self, params: dict, piece, src, dst) -> bool:
        return bool(self.rule(dst, params))

    def function_name(self) -> str:
        return "obey_" + self.name.replace("-", "_")

    def header(self, params: dict, name: str | None = None) -> str:
        name = name or self.function_name()
        at = next((p for p in range(1, SIZE - 1) if not all(self.allows(params, "walker", p, q) for q in (p - 1, p + 1))), 3)
        given = {"position": at, "goal": 0, "size": SIZE, "step": 0, "moves": [["left", at - 1], ["right", at + 1]]}
        expected = dict(given, moves=[m for m in given["moves"] if self.allows(params, "walker", at, m[1])])
        return (f"def {name}(obs):\n"
                f'    """Drop the moves that the new rule forbids.\n\n'
                f"    Stage: {STAGE}\n"
                f'    Reads: obs["moves"]\n'
                f'    Returns: obs with "moves" narrowed to the moves whose new position the rule allows, in order\n'
                f"    Rules: {self.describe(params)}\n"
                f"    Example:\n        >>> {name}({json.dumps(given)})\n        {json.dumps(expected)}\n"
                '    """\n')

    def reference(self, params: dict, name: str | None = None, form: str = "body") -> str:
        return self.header(params, name) + (
            "    out = dict(obs)\n"
            f"    out[\"moves\"] = [[m, x] for m, x in obs[\"moves\"] if {self.cond.format(**params)}]\n"
            "    return out\n")

    def properties(self, given, out) -> list[str]:
        if not isinstance(out, dict) or set(out) != set(given):
            return ["returns something other than the state with its keys"]
        kept = iter(given["moves"])
        if not isinstance(out["moves"], list) or not all(any(m == k for k in kept) for m in out["moves"]):
            return ["moves are not a subset of the input's, in order"]
        return []

    def cases(self, params: dict, seed: int = 0, size: int = SIZE) -> list[tuple[dict, dict]]:
        out = []
        for position in range(size):
            given = {"position": position, "goal": (position + 3 + seed) % size, "size": size, "step": 0,
                     "moves": [[n, position + d] for n, d in (("left", -1), ("right", 1)) if 0 <= position + d < size]}
            out.append((given, dict(given, moves=[m for m in given["moves"]
                                                  if self.allows(params, "walker", position, m[1])])))
        return out


def _cell(rng: random.Random) -> dict:
    return {"cell": rng.randint(1, SIZE - 2)}


def _pair(rng: random.Random) -> dict:
    cell, other = rng.sample(range(1, SIZE - 1), 2)
    return {"cell": cell, "other": other}


KINDS = (Closed("closed-cell", "The walker may no longer step onto cell {cell}.", "x != {cell}",
                lambda x, p: x != p["cell"], _cell),
         Closed("closed-pair", "The walker may no longer step onto cell {cell} or cell {other}.",
                "x != {cell} and x != {other}", lambda x, p: x not in (p["cell"], p["other"]), _pair,
                split="train", example=True),
         Closed("closed-above", "The walker may no longer step onto a cell above {cell}.", "x <= {cell}",
                lambda x, p: x <= p["cell"], _cell, split="train"),
         Closed("closed-below", "The walker may no longer step onto a cell below {cell}.", "x >= {cell}",
                lambda x, p: x >= p["cell"], _cell, split="train"))


@hookimpl
def ldengine_register_tasks(register):
    register(WalkTask())


@hookimpl
def ldengine_register_functions(register):
    register("linewalk", FUNCTIONS, "linewalk/moves.py")


@hookimpl
def ldengine_register_emergencies(register):
    for kind in KINDS:
        register(kind)
