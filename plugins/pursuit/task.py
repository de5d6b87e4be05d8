"""The pursuit task: plays seeded games between an agent's pursuers and an evader policy."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from ldengine.contracts import TaskBase
from ldengine.taskkit import play_through, selections_record
from ldengine_plugins.pursuit.rules import (FAIL_NO_VIOLATION, FAIL_VIOLATION, SUCCESS, PursuitGame,
                                   is_legal_pursuer_move, parse_cell, random_start)

Emit = Callable[[dict], None]
OUTCOMES = (SUCCESS, FAIL_NO_VIOLATION, FAIL_VIOLATION)


@dataclass
class GameResult:
    game: int
    seed: int
    outcome: str
    steps: int
    violations: int
    pursuers: list      # trajectory: per step, the three pursuer cells
    evader: list        # trajectory: per step, the evader's cell
    forbidden: tuple = ()   # cells closed to the pieces (an emergency's), for figures

    def record(self) -> dict:
        return {"game": self.game, "seed": self.seed, "outcome": self.outcome,
                "steps": self.steps, "violations": self.violations}


RULES = (
    "Pursuit game on a 21x21 grid of cells (x, y), 0 <= x, y <= 20. Three pursuers chase one evader. "
    "Each step every pursuer moves to a cell within Manhattan distance 2 (staying is allowed) that is "
    "on the board, not forbidden and not the evader's cell; an illegal move is a violation and the "
    "pursuer stays. The pursuers win when all three are within distance 1 of the evader. Then the "
    "evader moves one cell (or stays), away from the pursuers. More than 7 violations or 100 steps "
    "without capture is a failure.")

STAGES = {
    "pursuer.observe": "read the positions of the pursuers and the evader and their distances",
    "pursuer.generate": "list every cell each pursuer could move to within its reach",
    "pursuer.filter": "keep only the legal candidate cells of each pursuer",
    "pursuer.decide": "choose one legal cell per pursuer that closes in on and surrounds the evader",
}


EMERGENCY_STAGE = "apply the new rule: drop the candidate cells it forbids"


class PursuitTask(TaskBase):
    """The game; ``with_emergency(instance)`` gives the same game under a new rule.

    Under an emergency the referee applies the new rule to every move, the state
    carries it (``"emergency"``), the rules text the models read gains it, and the
    stage list names the stage its function fills; ``pipeline`` stays the
    teacher's: only an agent that adopts a function for the rule inserts it.
    """
    name = "pursuit"
    description = "three pursuers must surround an evader on a 21x21 board"
    pipeline = list(STAGES)
    evader = "greedy"           # the evader a run plays against when the user names none (--evader)
    size: int                   # the board's side (21)

    def __init__(self, size: int = 21, emergency: Any = None):
        self.size, self.emergency = size, emergency
        self._blocked: frozenset | None = None

    def with_emergency(self, emergency: Any) -> "PursuitTask":
        return PursuitTask(self.size, emergency)

    def rule_language(self, n: int, seed: int = 0, split: str = "train", wording: str | None = None) -> list:
        """``n`` rules of the generated rule language (``rule_shapes``: primitives joined by
        and / or / not / except) as parameterless emergency kinds; ``split`` "train" or "eval"
        chooses between shapes the writer may train on and shapes held out whole, ``wording``
        between the two sets of phrasings (default: the split's). ``finetune --method write
        --generated-rules N`` trains on them."""
        from ldengine_plugins.pursuit.rule_shapes import shape_rules
        return shape_rules(n, seed, split, wording, self.size)

    @property
    def fact_families(self) -> tuple:
        """Made-up facts in the game's words for training the student to read (``ldengine.reading``):
        the query states them, made-up alternatives' When: fields paraphrase them."""
        from ldengine_plugins.pursuit.reading import FAMILIES
        return FAMILIES

    @property
    def rules(self) -> str:
        if self.emergency is None:
            return RULES
        return f"{RULES} New rule: {self.emergency.description}"

    @property
    def stages(self) -> dict:
        if self.emergency is None:
            return STAGES
        stage, after = self.emergency.kind.stage, self.emergency.kind.after
        out = {}
        for name, text in STAGES.items():
            out[name] = text
            if name == after:
                out[stage] = EMERGENCY_STAGE
        return out

    def rule_refusal(self, text: str) -> str | None:
        """Why ``text`` cannot be a rule function of this task (a rule about several pieces at once)."""
        from ldengine_plugins.pursuit.emergencies import rule_refusal
        return rule_refusal(text)

    def custom_emergency(self, text: str, params: dict, allowed=(), forbidden=(), like: Any = None) -> Any:
        """A rule a user gives in words, checked against their examples or a known kind's rule."""
        from ldengine_plugins.pursuit.emergencies import custom_rule
        return custom_rule(text, params, allowed, forbidden, like, self.size)

    def blocked(self) -> frozenset:
        """Cells the emergency in force closes to some piece (starts avoid them); computed once."""
        if self._blocked is None:
            self._blocked = (self.emergency.kind.blocked(self.emergency.params, self.size)
                             if self.emergency else frozenset())
        return self._blocked

    # The start of the paper's Figure 6 (blue pursuers, orange evader).
    starts = {"paper": {"pursuers": [[3, 8], [14, 19], [17, 2]], "evader": [20, 18]}}

    def new_game(self, seed: int, forbidden: frozenset = frozenset(),
                 start: dict | None = None) -> tuple[PursuitGame, random.Random]:
        """Game ``seed``: a seeded random start, or ``start`` (pursuers, evader) with
        the same seeded evader randomness."""
        rng = random.Random(seed)
        if start is None:
            pursuers, evader = random_start(rng, self.size, forbidden | self.blocked())
        else:
            pursuers, evader = [tuple(p) for p in start["pursuers"]], tuple(start["evader"])
        return PursuitGame(self.size, pursuers, evader, forbidden, self.emergency), rng

    def play(self, agent: Any, game_index: int, seed: int, evader: Callable,
             emit: Emit, agent_name: str = "", evader_name: str = "",
             start: dict | None = None) -> GameResult:
        """One game with ``agent.act(state)`` deciding each pursuer step."""
        steps = self.game_steps(game_index, seed, evader, emit, agent_name, evader_name, start)
        return play_through(agent, steps)

    def game_steps(self, game_index: int, seed: int, evader: Callable, emit: Emit,
                   agent_name: str = "", evader_name: str = "", start: dict | None = None):
        """The game as a generator: yields the state of each pursuer step, receives
        ``(action, functions used)``, and returns the ``GameResult``. Several games
        driven side by side let an agent decide for all of them at once."""
        game, rng = self.new_game(seed, start=start)
        emit(_game_record(game, game_index, seed, agent_name, evader_name, self.blocked()))
        trail_p, trail_e = [list(game.pursuers)], [game.evader]
        while game.outcome is None:
            action, functions, *selections = yield game.state()
            step = game.pursuer_step(action)
            emit({"type": "pursuers", "game": game_index, "step": game.steps,
                  "proposed": [_cell_or_none(p) for p in step.proposed],
                  "positions": [list(p) for p in step.positions], "illegal": step.illegal,
                  "functions": list(functions), **selections_record(selections)})
            trail_p.append(list(game.pursuers))
            if game.outcome is None:
                cell = game.evader_step(lambda legal, g: evader(legal, g.pursuers, rng))
                emit({"type": "evader", "game": game_index, "step": game.steps, "position": list(cell)})
            trail_e.append(game.evader)
        emit({"type": "end", "game": game_index, "outcome": game.outcome,
              "steps": game.steps, "violations": game.violations})
        return GameResult(game_index, seed, game.outcome, game.steps, game.violations, trail_p, trail_e,
                          tuple(sorted(game.forbidden | self.blocked())))

    @property
    def text(self):
        """What the text-answering baselines are asked, and how their answers are read."""
        from ldengine_plugins.pursuit.baseline import TEXT
        return TEXT

    @property
    def kd(self):
        """Knowledge-distillation data and scoring for ``ldengine finetune --method kd``."""
        from ldengine_plugins.pursuit import kd
        return kd

    def summarize(self, results: list[GameResult]) -> dict:
        n = len(results)
        wins = [r.steps for r in results if r.outcome == SUCCESS]
        rates = {o: (sum(r.outcome == o for r in results) / n if n else 0.0) for o in OUTCOMES}
        return {"games": n, **rates,
                "avg_steps_success": sum(wins) / len(wins) if wins else None,
                "violations": sum(r.violations for r in results)}

    def summarize_state(self, state: Any) -> str:
        """What a stage's input holds, in words, for retrieval queries and selection prompts.

        It says which facts are already computed (distances, candidate cells,
        whether they are all legal), since that is what tells the next function
        apart; the facts that tell a stage's alternatives apart are the function
        base's (``fact_`` defs, stated by the engine after this summary). Coordinates and counts are left out: with coordinates in the query
        the retriever ranked the generate stage's function lower, and without
        counts most steps of a game give the same text, which the student's
        selection memo then answers at once.
        """
        if not isinstance(state, dict):
            return "no state"
        parts = ["distances to the evader " + ("measured" if "distances" in state else "not measured")]
        if isinstance(state.get("candidates"), list):
            parts.append("candidate cells generated, " + ("all legal" if _all_legal(state) else "some illegal"))
        else:
            parts.append("candidate cells not generated")
        parts.append("forbidden cells " + ("present" if state.get("forbidden") else "none"))
        return "; ".join(parts)

    def plot(self, result: GameResult, path: str, title: str = "") -> None:
        from ldengine_plugins.pursuit.plot import plot_trajectories
        plot_trajectories(result, self.size, path, title)

    def trace_result(self, records: list[dict]) -> GameResult:
        """The ``GameResult`` of one game rebuilt from its trace records (``ldengine plot``)."""
        head = next(r for r in records if r.get("type") == "game")
        end = next((r for r in records if r.get("type") == "end"), {})
        pursuers, evader = [head["pursuers"]], [head["evader"]]
        moved = {r["step"]: r["position"] for r in records if r.get("type") == "evader"}
        for record in (r for r in records if r.get("type") == "pursuers"):
            pursuers.append(record["positions"])
            evader.append(moved.get(record["step"], evader[-1]))
        return GameResult(head["game"], head["seed"], end.get("outcome", "unfinished"),
                          end.get("steps", len(pursuers) - 1), end.get("violations", 0), pursuers, evader,
                          tuple(map(tuple, head.get("forbidden", []))))


def _game_record(game: PursuitGame, index: int, seed: int, agent: str, evader: str,
                 blocked: frozenset = frozenset()) -> dict:
    """The trace's "game" record; "forbidden" includes cells an emergency closes, and
    "emergency" names it and its parameters."""
    record = {"type": "game", "task": "pursuit", "game": index, "seed": seed, "size": game.size,
              "forbidden": sorted(list(c) for c in game.forbidden | blocked),
              "pursuers": [list(p) for p in game.pursuers], "evader": list(game.evader),
              "agent": agent, "evader_policy": evader}
    if game.rule is not None:
        record["emergency"] = {"name": game.rule.kind.name, "params": dict(game.rule.params)}
    return record


def pursuer_blocked(state: dict) -> bool:
    """Some pursuer is 2 or more columns (rows) from the evader and none of its candidate cells
    is nearer it in x (y): an obstacle is in its way (route_around_block's When: field)."""
    evader = parse_cell(state.get("evader"))
    candidates = state.get("candidates")
    if evader is None or not isinstance(candidates, list):
        return False
    for pursuer, cells in zip(state.get("pursuers") or [], candidates):
        src = parse_cell(pursuer)
        cells = [c for c in map(parse_cell, cells) if c is not None] if isinstance(cells, list) else []
        if src is None or not cells:
            continue
        for axis in (0, 1):
            far = abs(src[axis] - evader[axis])
            if far >= 2 and min(abs(c[axis] - evader[axis]) for c in cells) >= far:
                return True
    return False


EDGE_MARGIN = 2


def capture_ready(state: dict) -> bool:
    """Every pursuer has a candidate cell next to the evader (capture_adjacent's When: field). The
    candidates, not the usual reach of 2: a new rule may shorten the reach (short-reach) or close cells."""
    evader, candidates = parse_cell(state.get("evader")), state.get("candidates")
    if evader is None or not isinstance(candidates, list) or not candidates:
        return False
    return all(isinstance(cells, list) and any(c is not None and abs(c[0] - evader[0]) + abs(c[1] - evader[1]) == 1
                                               for c in map(parse_cell, cells))
               for cells in candidates)


def near_edge(state: dict) -> bool:
    """The evader is within EDGE_MARGIN cells of an edge of the board."""
    evader, size = parse_cell(state.get("evader")), state.get("size")
    if evader is None or not isinstance(size, int):
        return False
    return min(evader[0], evader[1], size - 1 - evader[0], size - 1 - evader[1]) <= EDGE_MARGIN


def _all_legal(state: dict) -> bool:
    """Every candidate cell is a legal move for its pursuer (the rules in README, "The two tasks: rules")."""
    evader, size = parse_cell(state.get("evader")), state.get("size")
    forbidden = frozenset(c for c in map(parse_cell, state.get("forbidden") or []) if c is not None)
    if evader is None or not isinstance(size, int):
        return False
    for pursuer, cells in zip(state.get("pursuers") or [], state["candidates"]):
        src = parse_cell(pursuer)
        if src is None or not isinstance(cells, list):
            return False
        if not all(is_legal_pursuer_move(src, cell, evader, size, forbidden) for cell in cells):
            return False
    return True


def _cell_or_none(value) -> list | None:
    cell = parse_cell(value)
    return list(cell) if cell is not None else None
