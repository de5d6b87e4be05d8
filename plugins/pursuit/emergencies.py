"""Emergencies of the pursuit game: new rules that change which moves are legal.

Each kind is a rule over one move: ``rule(c, p, params)`` (the referee's test;
``c`` = the destination [x, y], ``p`` = the mover's cell [px, py]) and the same
rule as a condition in Python text over ``x, y, px, py`` (``cond``), from which
the teacher's reference function is written: the manual's worked examples and
the training data for writing functions. A test checks that the two agree on
every move.

``split="eval"`` kinds are the ones Table 2 measures; they are held out of the
writing fine-tune, which sees only ``split="train"`` kinds.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from ldengine_plugins.pursuit.rules import REACH, is_legal_pursuer_move, manhattan, random_start

STAGE = "pursuer.emergency"
# The writing prompt's first lines (the engine's ``emergency.write.preamble_of``).
PREAMBLE = ("# Functions for new rules of the game. Each keeps, for every pursuer at (px, py), only\n"
            "# the candidate cells (x, y) that the rule allows.\n\n")
AFTER = "pursuer.filter"
PIECES = ("pursuer", "evader")


class OnTheBoard:
    """What every pursuit kind gives verification and the board maps (``verification``): the
    board's single moves and random states as inputs, a wrong answer's cells in words, and a
    function's effect on every move."""

    def domain_cases(self, params: dict, cases: list, seed: int, game: Any = None) -> list:
        """Verification's inputs beyond the cases: every single move of the board, random states."""
        from ldengine_plugins.pursuit.verification import domain_cases
        return domain_cases(self, params, cases, seed, game)

    def difference(self, got: Any, expected: Any) -> str:
        """Which cells a wrong answer kept or dropped."""
        from ldengine_plugins.pursuit.verification import difference
        return difference(got, expected)

    def move_map(self, source: str, name: str, sandbox: Any, template: dict) -> list[tuple] | str:
        """(src, dst, kept) for every single move of the board, or the first failing call's error."""
        from ldengine_plugins.pursuit.verification import move_map
        return move_map(source, name, sandbox, template)


@dataclass(frozen=True)
class PursuitEmergency(OnTheBoard):
    """A kind of new rule; ``params(seed, size)`` draws one instance of it."""
    name: str
    text: str                       # the rule in words, with {param} fields
    cond: str                       # the allowed-move condition, with {param} fields
    rule: Callable[[list, list, dict], bool]
    draw: Callable[[random.Random, int], dict]
    pieces: tuple[str, ...] = PIECES  # who must obey it
    split: str = "eval"
    example: bool = False           # a worked example in the writing prompt (train kinds only)
    summary: str = ""
    task: str = "pursuit"
    stage: str = STAGE
    after: str = AFTER
    preamble = PREAMBLE             # the writing prompt's first lines (a class constant, not a field)

    def params(self, seed: int, size: int = 21) -> dict:
        return self.draw(random.Random(f"{self.name}:{seed}"), size)

    def describe(self, params: dict) -> str:
        return self.text.format(**params)

    def condition(self, params: dict) -> str:
        return self.cond.format(**params)

    def allows(self, params: dict, piece: str, src, dst) -> bool:
        """The new rule, as the referee applies it, for one move of ``piece``."""
        if piece not in self.pieces:
            return True
        return bool(self.rule(list(dst), list(src), params))

    def function_name(self) -> str:
        return "obey_" + self.name.replace("-", "_")

    def header(self, params: dict, name: str | None = None) -> str:
        return header(self, params, name)

    def reference(self, params: dict, name: str | None = None, form: str = "body") -> str:
        """The teacher's function for this instance: the header plus ``body`` (``form``
        "condition": the condition inside ``SCAFFOLD``, the way a condition-form writer writes it)."""
        if form == "condition":
            before, after = SCAFFOLD
            return header(self, params, name) + before + self.condition(params) + after
        return header(self, params, name) + body(self.condition(params))

    def scaffold(self) -> tuple[str, str]:
        """The body around the allowed-move condition, for a writer of the condition form."""
        return SCAFFOLD

    def properties(self, given: Any, out: Any) -> list[str]:
        return subset_in_order(given, out)

    def cases(self, params: dict, seed: int = 0, size: int = 21, n: int = 8) -> list[tuple[dict, dict]]:
        return derived_cases(lambda piece, src, dst: self.allows(params, piece, src, dst),
                             self.blocked(params, size), seed, size, n)

    def blocked(self, params: dict, size: int = 21) -> frozenset:
        """Cells some piece may not enter from any side (starts avoid them; plots shade them)."""
        def closed(cell: tuple, piece: str) -> bool:
            x, y = cell
            return not any(self.allows(params, piece, src, cell)
                           for src in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)))
        return frozenset((x, y) for x in range(size) for y in range(size)
                         if any(closed((x, y), piece) for piece in self.pieces))


# ---- the function the student writes -------------------------------------------------------

def header(kind: Any, params: dict, name: str | None = None, example: tuple | None = None) -> str:
    """The def line and docstring (the manual entry) of an emergency function; the body follows.

    The engine writes this part from the rule; the student writes the body.
    """
    name = name or kind.function_name()
    rule = kind.describe(params)
    if example is None:
        example = _doc_example(lambda piece, src, dst: kind.allows(params, piece, src, dst))
    shown = ""
    if example:                 # () : a rule known by its words alone has no worked example
        given, expected = example
        shown = (f"    Example:\n"
                 f"        >>> {name}({json.dumps(given)})\n"
                 f"        {json.dumps(expected)}\n")
    return (f"def {name}(obs):\n"
            f'    """Drop the candidate cells that the new rule forbids.\n\n'
            f"    Stage: {STAGE}\n"
            f'    Reads: obs["candidates"], obs["pursuers"]\n'
            f'    Returns: obs with "candidates" narrowed, per pursuer, to the cells the new rule allows, in the same order\n'
            f"    Rules: {rule}\n"
            + shown + '    """\n')


def body(condition: str) -> str:
    """The reference body: keep a pursuer's candidate (x, y) when the condition holds
    ((px, py): the pursuer's cell)."""
    return ("    out = dict(obs)\n"
            f"    out[\"candidates\"] = [[[x, y] for x, y in cells if {condition}]\n"
            "                         for (px, py), cells in zip(obs[\"pursuers\"], obs[\"candidates\"])]\n"
            "    return out\n")


# The condition form of an emergency function: the engine writes the body, the writer only
# the allowed-move condition (one line, after ``return``), the one part that changes from rule
# to rule. The whole function still goes through the isolated worker and verification.
SCAFFOLD = ("    def allowed(x, y, px, py):\n        return ",
            "\n    out = dict(obs)\n"
            "    out[\"candidates\"] = [[[x, y] for x, y in cells if allowed(x, y, px, py)]\n"
            "                         for (px, py), cells in zip(obs[\"pursuers\"], obs[\"candidates\"])]\n"
            "    return out\n")


def _doc_example(allows: Callable) -> tuple[dict, dict]:
    """A small worked example for the docstring: one pursuer, two cells the rule drops and
    two it keeps."""
    near = [c for c in _touching(allows, 21) if allows("pursuer", c, c)]
    p = near[len(near) // 2] if near else (10, 10)
    cells = legal_obs([p], _far_from([p], 21), 21)["candidates"][0]
    kept = [c for c in cells if allows("pursuer", p, tuple(c))]
    pick = sorted([c for c in cells if c not in kept][:2] + kept[:2])
    return ({"pursuers": [list(p)], "candidates": [pick]},
            {"pursuers": [list(p)], "candidates": [[c for c in pick if c in kept]]})


# ---- verification cases --------------------------------------------------------------------

def derived_cases(allows: Callable, blocked: frozenset, seed: int, size: int = 21,
                  n: int = 8) -> list[tuple[dict, dict]]:
    """``n`` (input, expected output) pairs for an emergency function: seeded states, their
    legal candidates (base rules), and the ones the new rule allows.

    In all but the last case the first pursuer stands where the rule removes some
    of its cells, so a function that ignores the rule fails; the others stand
    anywhere. The last case is a random start, where the rule may remove nothing.
    """
    rng, near = random.Random(seed), [c for c in _touching(allows, size) if c not in blocked]
    free = [(x, y) for x in range(size) for y in range(size) if (x, y) not in blocked]
    cases = []
    for i in range(n):
        pursuers, evader = random_start(rng, size, blocked)
        if near and i < n - 1:
            pursuers[0] = rng.choice(near)
            evader = _far_from(pursuers, size, free, rng)
        obs = legal_obs(pursuers, evader, size)
        kept = [[c for c in cand if allows("pursuer", tuple(p), tuple(c))]
                for p, cand in zip(obs["pursuers"], obs["candidates"])]
        cases.append((obs, dict(obs, candidates=kept)))
    return cases


def _touching(allows: Callable, size: int) -> list[tuple]:
    """Cells where a pursuer standing there loses some of its moves to the rule."""
    steps = [(dx, dy) for dx in range(-REACH, REACH + 1) for dy in range(-REACH, REACH + 1)
             if abs(dx) + abs(dy) <= REACH]
    return [(x, y) for x in range(size) for y in range(size)
            if any(not allows("pursuer", (x, y), (x + dx, y + dy)) for dx, dy in steps
                   if 0 <= x + dx < size and 0 <= y + dy < size)]


def _far_from(pursuers: list, size: int, free: list | None = None, rng: random.Random | None = None) -> tuple:
    """An evader cell at distance >= 3 from every pursuer (the first such, or a seeded one)."""
    free = free or [(x, y) for x in range(size) for y in range(size)]
    ok = [c for c in free if all(manhattan(c, tuple(p)) >= 3 for p in pursuers)]
    return rng.choice(ok) if rng else ok[0]


def legal_obs(pursuers, evader, size: int = 21) -> dict:
    """What the emergency stage reads: the state plus each pursuer's legal cells (base rules)."""
    steps = [(dx, dy) for dx in range(-REACH, REACH + 1) for dy in range(-REACH, REACH + 1)
             if abs(dx) + abs(dy) <= REACH]
    cands = [[[p[0] + dx, p[1] + dy] for dx, dy in steps
              if is_legal_pursuer_move(tuple(p), [p[0] + dx, p[1] + dy], tuple(evader), size, frozenset())]
             for p in pursuers]
    return {"size": size, "reach": REACH, "evader": list(evader),
            "pursuers": [list(p) for p in pursuers], "forbidden": [], "candidates": cands}


def subset_in_order(given: Any, out: Any) -> list[str]:
    """The property every emergency function must keep: each pursuer's cells are a subset
    of its input cells, in the same order, and nothing else in the state changes."""
    if not isinstance(out, dict):
        return [f"returns {type(out).__name__}, not the state dict"]
    problems = []
    if set(out) != set(given):
        problems.append("changes the state's keys")
    problems += [f"changes obs[{k!r}]" for k in given if k != "candidates" and out.get(k) != given[k]]
    cands = out.get("candidates")
    if not isinstance(cands, list) or len(cands) != len(given["candidates"]):
        return problems + ["candidates are not one list per pursuer"]
    for i, (before, after) in enumerate(zip(given["candidates"], cands)):
        if not isinstance(after, list) or not _in_order(after, before):
            problems.append(f"pursuer {i + 1}'s cells are not a subset of its input, in order")
    return problems


def _in_order(small: list, big: list) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


# ---- the kinds -----------------------------------------------------------------------------

def _square(rng: random.Random, size: int) -> dict:
    x0, y0 = rng.randint(3, size - 8), rng.randint(3, size - 8)
    return {"x0": x0, "y0": y0, "x1": x0 + 4, "y1": y0 + 4}


def _row(rng: random.Random, size: int) -> dict:
    return {"y0": rng.randint(4, size - 5)}


def _wall(rng: random.Random, size: int) -> dict:
    x, y0 = rng.randint(5, size - 6), rng.randint(2, size - 10)
    return {"x": x, "x_next": x + 1, "y0": y0, "y1": y0 + 6}


def _nothing(rng: random.Random, size: int) -> dict:
    return {}


def _column(rng: random.Random, size: int) -> dict:
    return {"x": rng.randint(2, size - 3)}


def _line(rng: random.Random, size: int) -> dict:
    return {"y": rng.randint(2, size - 3)}


def _barrier(rng: random.Random, size: int) -> dict:
    x0 = rng.randint(2, size - 10)
    return {"y": rng.randint(3, size - 4), "x0": x0, "x1": x0 + rng.randint(3, 7)}


def _step(rng: random.Random, size: int) -> dict:
    return {"d": rng.randint(0, 1)}


def _leash(rng: random.Random, size: int) -> dict:
    return {"cx": rng.randint(4, size - 5), "cy": rng.randint(4, size - 5), "r": rng.randint(4, 8)}


def _diamond(rng: random.Random, size: int) -> dict:
    return {"cx": rng.randint(5, size - 6), "cy": rng.randint(5, size - 6), "r": rng.randint(1, 3)}


def _corner(rng: random.Random, size: int) -> dict:
    return {"s": rng.randint(4, 10)}


def _half(rng: random.Random, size: int) -> dict:
    return {"x": rng.randint(3, 7)}


def _canal(rng: random.Random, size: int) -> dict:
    y, x0 = rng.randint(3, size - 5), rng.randint(2, size - 8)
    return {"y": y, "y_next": y + 1, "x0": x0, "x1": x0 + rng.randint(2, 4)}


def _rect(rng: random.Random, size: int) -> dict:
    x0, y0 = rng.randint(2, size - 10), rng.randint(2, size - 10)
    return {"x0": x0, "y0": y0, "x1": x0 + rng.randint(5, 7), "y1": y0 + rng.randint(5, 7)}


def _band(rng: random.Random, size: int) -> dict:
    y0 = rng.randint(2, size - 9)
    return {"y0": y0, "y1": y0 + rng.randint(3, 6)}


KINDS = (
    # evaluated (held out of the writing fine-tune)
    PursuitEmergency(
        "restricted-area",
        "A 5x5 restricted area appeared: no piece may enter a cell (x, y) with {x0} <= x <= {x1} "
        "and {y0} <= y <= {y1}.",
        "not ({x0} <= x <= {x1} and {y0} <= y <= {y1})",
        lambda c, p, k: not (k["x0"] <= c[0] <= k["x1"] and k["y0"] <= c[1] <= k["y1"]), _square,
        summary="the paper's seeded 5x5 forbidden square"),
    PursuitEmergency(
        "no-stop-row",
        "Pursuers may no longer stop on a cell (x, y) with y == {y0} (they may jump over that row; "
        "the evader may stand on it).",
        "not (y == {y0})", lambda c, p, k: c[1] != k["y0"], _row, pieces=("pursuer",),
        summary="a row pursuers may jump over but not stop on"),
    PursuitEmergency(
        "wall",
        "A wall stands between columns x = {x} and x = {x_next} for rows {y0} to {y1}: a move from (px, py) "
        "to (x, y) is forbidden when min(px, x) <= {x} < max(px, x) and ({y0} <= py <= {y1} or "
        "{y0} <= y <= {y1}).",
        "not (min(px, x) <= {x} < max(px, x) and ({y0} <= py <= {y1} or {y0} <= y <= {y1}))",
        lambda c, p, k: not (min(p[0], c[0]) <= k["x"] < max(p[0], c[0])
                             and (k["y0"] <= p[1] <= k["y1"] or k["y0"] <= c[1] <= k["y1"])),
        _wall, summary="a wall segment no move may cross"),
    PursuitEmergency(
        "short-reach",
        "Deep mud: pursuers may now move at most 1 cell per step: a move from (px, py) to (x, y) "
        "needs |x - px| + |y - py| <= 1.",
        "abs(x - px) + abs(y - py) <= 1",
        lambda c, p, k: abs(c[0] - p[0]) + abs(c[1] - p[1]) <= 1, _nothing, pieces=("pursuer",),
        summary="pursuers' reach drops from 2 to 1"),
    # training only: what the student learns to write functions from
    PursuitEmergency("forbidden-column", "No piece may enter a cell (x, y) with x == {x}.", "not (x == {x})",
                     lambda c, p, k: c[0] != k["x"], _column, split="train", example=True,
                     summary="a forbidden column"),
    PursuitEmergency("forbidden-row", "No piece may enter a cell (x, y) with y == {y}.", "not (y == {y})",
                     lambda c, p, k: c[1] != k["y"], _line, split="train", summary="a forbidden row"),
    PursuitEmergency("barrier", "A barrier fell: no piece may enter a cell (x, y) with y == {y} and "
                     "{x0} <= x <= {x1}.", "not (y == {y} and {x0} <= x <= {x1})",
                     lambda c, p, k: not (c[1] == k["y"] and k["x0"] <= c[0] <= k["x1"]), _barrier,
                     split="train", summary="a forbidden row segment"),
    PursuitEmergency("diamond-pit",
                     "A pit opened: no piece may enter a cell (x, y) with |x - {cx}| + |y - {cy}| <= {r}.",
                     "not (abs(x - {cx}) + abs(y - {cy}) <= {r})",
                     lambda c, p, k: abs(c[0] - k["cx"]) + abs(c[1] - k["cy"]) > k["r"], _diamond, split="train",
                     example=True, summary="a diamond-shaped forbidden region"),
    PursuitEmergency("flooded-corner", "The corner is flooded: no piece may enter a cell (x, y) with x + y < {s}.",
                     "not (x + y < {s})", lambda c, p, k: c[0] + c[1] >= k["s"], _corner, split="train",
                     summary="a forbidden triangle"),
    PursuitEmergency("west-closed", "The west side is closed: no pursuer may enter a cell (x, y) with x < {x}.",
                     "not (x < {x})", lambda c, p, k: c[0] >= k["x"], _half, pieces=("pursuer",), split="train",
                     summary="a forbidden half-plane for pursuers"),
    PursuitEmergency("one-way-gate", "Column x = {x} became one-way: a move from (px, py) to (x, y) is forbidden "
                     "when px < {x} <= x.", "not (px < {x} <= x)",
                     lambda c, p, k: not (p[0] < k["x"] <= c[0]), _column, pieces=("pursuer",), split="train",
                     summary="pursuers may not cross a column eastwards"),
    PursuitEmergency("no-standing", "Pursuers must keep moving: a move from (px, py) to (x, y) is forbidden when "
                     "x == px and y == py.", "not (x == px and y == py)", lambda c, p, k: c != p, _nothing,
                     pieces=("pursuer",), split="train", summary="staying is forbidden"),
    PursuitEmergency("straight-moves", "Pursuers may only move in straight lines: a move from (px, py) to "
                     "(x, y) needs x == px or y == py.", "x == px or y == py",
                     lambda c, p, k: c[0] == p[0] or c[1] == p[1], _nothing,
                     pieces=("pursuer",), split="train", example=True, summary="no diagonal moves"),
    PursuitEmergency("slow-x", "Pursuers may change x by at most {d} per step: a move from (px, py) to (x, y) "
                     "needs |x - px| <= {d}.", "abs(x - px) <= {d}",
                     lambda c, p, k: abs(c[0] - p[0]) <= k["d"], _step, pieces=("pursuer",),
                     split="train", summary="at most d columns per step"),
    PursuitEmergency("slow-y", "Pursuers may change y by at most {d} per step: a move from (px, py) to (x, y) "
                     "needs |y - py| <= {d}.", "abs(y - py) <= {d}",
                     lambda c, p, k: abs(c[1] - p[1]) <= k["d"], _step, pieces=("pursuer",),
                     split="train", summary="at most d rows per step"),
    PursuitEmergency("leash", "Pursuers are leashed to a post at ({cx}, {cy}): a move from (px, py) to (x, y) "
                     "needs |x - {cx}| + |y - {cy}| <= {r}.", "abs(x - {cx}) + abs(y - {cy}) <= {r}",
                     lambda c, p, k: abs(c[0] - k["cx"]) + abs(c[1] - k["cy"]) <= k["r"], _leash,
                     pieces=("pursuer",), split="train", summary="pursuers stay near a post"),
    PursuitEmergency("river", "A river flows along row y = {y}: a move from (px, py) to (x, y) is forbidden "
                     "when min(py, y) < {y} < max(py, y) or y == {y}.",
                     "not (min(py, y) < {y} < max(py, y) or y == {y})",
                     lambda c, p, k: not (min(p[1], c[1]) < k["y"] < max(p[1], c[1]) or c[1] == k["y"]), _line,
                     pieces=("pursuer",), split="train", summary="pursuers may not enter or jump a row"),
    PursuitEmergency("toll-row", "Row y = {y} has a toll gate for columns {x0} to {x1}: a move from (px, py) to "
                     "(x, y) is forbidden when py < {y} <= y and ({x0} <= px <= {x1} or {x0} <= x <= {x1}).",
                     "not (py < {y} <= y and ({x0} <= px <= {x1} or {x0} <= x <= {x1}))",
                     lambda c, p, k: not (p[1] < k["y"] <= c[1] and (k["x0"] <= p[0] <= k["x1"]
                                                                    or k["x0"] <= c[0] <= k["x1"])),
                     _barrier, pieces=("pursuer",), split="train", summary="no northward crossing of a row segment"),
    PursuitEmergency("canal", "A canal runs between rows y = {y} and y = {y_next}, crossable only on the bridge at "
                     "columns {x0} to {x1}: a move from (px, py) to (x, y) is forbidden when min(py, y) <= {y} < "
                     "max(py, y) and not ({x0} <= px <= {x1} and {x0} <= x <= {x1}).",
                     "not (min(py, y) <= {y} < max(py, y) and not ({x0} <= px <= {x1} and {x0} <= x <= {x1}))",
                     lambda c, p, k: not (min(p[1], c[1]) <= k["y"] < max(p[1], c[1])
                                          and not (k["x0"] <= p[0] <= k["x1"] and k["x0"] <= c[0] <= k["x1"])),
                     _canal, split="train", summary="a row boundary crossed only on a bridge"),
    PursuitEmergency("corral", "Pursuers inside the corral may not leave it: a move from (px, py) to (x, y) is "
                     "forbidden when {x0} <= px <= {x1} and {y0} <= py <= {y1} and not ({x0} <= x <= {x1} and "
                     "{y0} <= y <= {y1}).",
                     "not ({x0} <= px <= {x1} and {y0} <= py <= {y1} and not ({x0} <= x <= {x1} and "
                     "{y0} <= y <= {y1}))",
                     lambda c, p, k: not (k["x0"] <= p[0] <= k["x1"] and k["y0"] <= p[1] <= k["y1"]
                                          and not (k["x0"] <= c[0] <= k["x1"] and k["y0"] <= c[1] <= k["y1"])),
                     _rect, pieces=("pursuer",), split="train", summary="pursuers inside a rectangle stay in it"),
    PursuitEmergency("lanes", "In rows {y0} to {y1} pursuers must keep their column: a move from (px, py) to (x, y) "
                     "is forbidden when x != px and ({y0} <= py <= {y1} or {y0} <= y <= {y1}).",
                     "not (x != px and ({y0} <= py <= {y1} or {y0} <= y <= {y1}))",
                     lambda c, p, k: not (c[0] != p[0] and (k["y0"] <= p[1] <= k["y1"] or k["y0"] <= c[1] <= k["y1"])),
                     _band, pieces=("pursuer",), split="train", summary="no sideways moves in a band of rows"),
)


__all__ = ["AFTER", "KINDS", "STAGE", "PursuitEmergency", "body", "derived_cases", "header",
           "legal_obs", "subset_in_order"]


# ---- a rule a user describes in words ----------------------------------------------------

# Words that make a rule about several pieces at once (where one stands relative to another):
# a rule function judges one pursuer's own move, so such a rule cannot be written as one.
GROUP_WORDS = re.compile(
    r"\b(same cell|same square|each other|one another|no two|two (pursuers|pieces)|any two|together|"
    r"share (a|the) (cell|square)|(another|other|a second|second) (pursuer|piece)s?|"
    r"between (the )?(two |three )?(pursuers|pieces)|(pursuers|pieces) apart)\b", re.IGNORECASE)


def rule_refusal(text: str) -> str | None:
    """Why ``text`` cannot be a rule function (None when it can): it speaks of where one piece
    stands relative to another ("no two pursuers on the same cell"), and a rule function
    keeps or drops each pursuer's own moves one by one, not the joint move of several."""
    found = GROUP_WORDS.search(text or "")
    if not found:
        return None
    return (f"this rule is about several pieces at once (\"{found.group(0)}\"): a rule function judges one "
            "pursuer's own move from (px, py) to (x, y), so a rule over the joint move of several pieces cannot "
            "be written as one; say it as a rule on each pursuer's move (cells, lines, areas, distances from a "
            "fixed cell or the evader, directions)")



@dataclass(frozen=True)
class Expect:
    """A partial expectation from a user's example: pursuer 1 must keep ``keep`` and drop ``drop``
    (what the rule does to its other cells is not known)."""
    keep: tuple = ()
    drop: tuple = ()

    def problem(self, out: Any) -> str | None:
        try:
            cells = [tuple(c) for c in out["candidates"][0]]
        except (KeyError, TypeError, IndexError):
            return "returns no candidate list for pursuer 1"
        for c in self.drop:
            if tuple(c) in cells:
                return f"keeps {list(c)}, which the rule forbids"
        for c in self.keep:
            if tuple(c) not in cells:
                return f"drops {list(c)}, which the rule allows"
        return None


@dataclass(frozen=True)
class CustomRule(OnTheBoard):
    """A new rule given in words, its parameters and the user's examples of allowed and
    forbidden moves (``((px, py), (x, y))``; a bare cell means "from a neighbouring cell")."""
    text: str
    given_params: tuple = ()
    allowed: tuple = ()
    forbidden: tuple = ()
    like: Any = None                # a registered kind this text describes: check against its rule
    task: str = "pursuit"
    stage: str = STAGE
    after: str = AFTER
    split: str = "user"
    preamble = PREAMBLE             # the writing prompt's first lines (a class constant, not a field)

    @property
    def name(self) -> str:
        import hashlib
        return "custom-" + hashlib.sha256(repr((self.text, self.given_params)).encode()).hexdigest()[:8]

    @property
    def judges_every_move(self) -> bool:
        """Whether the rule can judge any move (a ``like`` kind's rule), not only the examples."""
        return self.like is not None

    def allows(self, params: dict, piece: str, src, dst) -> bool:
        """``like``'s rule. A rule known only by examples refuses exactly the pursuer moves its
        forbidden examples name: nothing else is known to be forbidden (the referee's reading,
        when such a rule is in force in a game; verification compares with no rule then)."""
        if self.like is not None:
            return self.like.allows(params, piece, src, dst)
        return piece != "pursuer" or (tuple(src), tuple(dst)) not in self.forbidden

    def blocked(self, params: dict, size: int = 21) -> frozenset:
        """``like``'s closed cells; a rule known only by example moves closes no whole cell."""
        return self.like.blocked(params, size) if self.like is not None else frozenset()

    def params(self, seed: int = 0, size: int = 21) -> dict:
        return dict(self.given_params)

    def describe(self, params: dict) -> str:
        """The text with its {name} fields filled in; parameters it does not mention are appended."""
        try:
            text = self.text.format(**params)
        except (KeyError, IndexError, ValueError):
            text = self.text
        extra = ", ".join(f"{k} = {v}" for k, v in params.items() if "{" + k + "}" not in self.text)
        return text + (f" (parameters: {extra})" if extra else "")

    def function_name(self) -> str:
        return "obey_new_rule"

    def scaffold(self) -> tuple[str, str]:
        return SCAFFOLD

    @property
    def examples_given(self) -> bool:
        """Whether the rule is known by more than its words (examples, or a ``like`` kind)."""
        return self.like is not None or bool(self.allowed or self.forbidden)

    def confirmed(self, forbidden_moves: list, allowed_moves: list) -> "CustomRule":
        """This rule once the user has confirmed what a function forbids on the board: those
        moves become its forbidden examples (with ``allowed_moves`` as allowed ones), so the
        referee and a later verification judge every move the user saw."""
        forbidden = tuple(dict.fromkeys(self.forbidden + tuple((tuple(s), tuple(d)) for s, d in forbidden_moves)))
        allowed = tuple(dict.fromkeys(self.allowed + tuple((tuple(s), tuple(d)) for s, d in allowed_moves)))
        return replace(self, forbidden=forbidden, allowed=allowed)

    def header(self, params: dict, name: str | None = None) -> str:
        if self.like is not None:
            return header(self, params, name)
        if not self.examples_given:
            return header(self, params, name, example=())
        given, expect = self.cases(params)[0]
        out = {"pursuers": given["pursuers"],
               "candidates": [[c for c in given["candidates"][0] if tuple(c) not in map(tuple, expect.drop)]]}
        return header(self, params, name, ({"pursuers": given["pursuers"], "candidates": given["candidates"]}, out))

    def properties(self, given: Any, out: Any) -> list[str]:
        return subset_in_order(given, out)

    def cases(self, params: dict, seed: int = 0, size: int = 21) -> list[tuple[dict, Expect]]:
        """The ``like`` kind's cases, else one per example: a pursuer at the move's source,
        the evader far away."""
        if self.like is not None:
            return self.like.cases(params, seed, size)
        if not self.examples_given:     # words alone: one state to check the function's form on
            centre = (size // 2, size // 2)
            return [(legal_obs([centre], _far_from([centre], size), size), Expect())]
        cases = []
        for moves, keep in ((self.forbidden, False), (self.allowed, True)):
            for src, dst in moves:
                obs = legal_obs([src], _far_from([src, dst], size), size)
                if list(dst) not in obs["candidates"][0]:
                    continue        # not a legal move under the old rules: nothing to check
                expect = Expect(keep=(tuple(dst),)) if keep else Expect(drop=(tuple(dst),))
                cases.append((obs, expect))
        return cases


def custom_rule(text: str, params: dict, allowed: list = (), forbidden: list = (), like: Any = None,
                size: int = 21) -> CustomRule:
    """A ``CustomRule``; bare cells become moves from a neighbouring cell on the board."""
    def as_move(item: tuple) -> tuple:
        if len(item) == 2 and all(isinstance(v, int) for v in item):
            x, y = item
            src = next(((x + dx, y + dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))
                        if 0 <= x + dx < size and 0 <= y + dy < size), (x, y))
            return (src, (x, y))
        return (tuple(item[0]), tuple(item[1]))
    return CustomRule(text, tuple(params.items()), tuple(map(as_move, allowed)), tuple(map(as_move, forbidden)),
                      like)
