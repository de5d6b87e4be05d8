"""Verification inputs of pursuit's new rules: every single move of the board and random
states, the way ``ldengine.emergency.verify`` asks a kind for them (``domain_cases``); which
cells a wrong answer kept or dropped (``difference``); and what a rule function does to every
move (``move_map``, for the board maps ``ldengine emergency`` shows). The engine knows no
board: these are the pursuit kinds' own.
"""
from __future__ import annotations

import random
from typing import Any, Callable

from ldengine.emergency.verify import RANDOM_STATES, GameInputs, PropertiesOnly, plain_difference
from ldengine.sandbox import compile_function


def domain_cases(kind: Any, params: dict, cases: list, seed: int,
                 game: GameInputs | None = None) -> list[tuple[str, Any, Any]]:
    """(label, input, expected) beyond the shown cases, for a rule over single moves whose
    cases are states with ``pursuers``, ``candidates``, ``size`` and ``reach``: every cell of
    the board as a mover's source with every legal destination from it (the whole single-move
    domain, three movers per state), then ``RANDOM_STATES`` states drawn with ``seed``
    (movers anywhere, sharing cells, the evader next to them, candidate lists thinned at
    random); the engine adds the kind's own cases for ``seed``. With ``game`` each state is the stage's
    input as a game computes it (``GameInputs``); without, the cases' shape. Expected outputs
    come from the rule (``kind.allows``); a rule that cannot judge every move gets
    ``PropertiesOnly``. Any other shape of state gets none."""
    template = cases[0][0] if cases and isinstance(cases[0][0], dict) else None
    if template is None or not {"pursuers", "candidates", "size", "reach"} <= set(template):
        return []
    size, reach = int(template["size"]), int(template["reach"])
    steps = random.Random(seed)

    def build(pursuers: list, evader: tuple) -> dict | None:
        if game is not None:
            out = game.make(pursuers=[list(p) for p in pursuers], evader=list(evader), step=steps.randrange(100))
            return out if out is not None and {"pursuers", "candidates"} <= set(out) else None
        return _state(template, pursuers, evader, size, reach)
    rule = _move_rule(kind, params)
    states = [("move domain", s) for s in _domain_states(build, size, len(template["pursuers"]))]
    states += [(f"random state (seed {seed})", s)
               for s in _random_states(build, size, reach, len(template["pursuers"]), seed)]
    labelled = [(f"{what} {i}: movers at {state['pursuers']}, evader at {state['evader']}", state, _expected(state, rule))
                for i, (what, state) in enumerate(states, 1) if state is not None]
    return labelled


def move_map(source: str, name: str, sandbox: Any, template: dict, movers: int = 3) -> list[tuple] | str:
    """What a function does to every single move of the board, as verification's move domain
    meets them (every cell as a mover's source, ``movers`` to a state, every legal destination):
    ``(src, dst, kept)`` triples, or the error of the first call that fails. ``template``: a
    state of the stage's input shape (``size``, ``reach``, ``pursuers``, ``candidates``)."""
    module = compile_function(source, filename=f"<emergency {name}>")
    size, reach = int(template["size"]), int(template["reach"])
    moves = []
    for state in _domain_states(lambda pursuers, evader: _state(template, pursuers, evader, size, reach),
                                size, movers):
        result = sandbox.call(module, name, state)
        try:
            kept = [{tuple(c) for c in cells} for cells in result.value["candidates"]] if result.ok else None
        except (KeyError, TypeError):
            kept = None
        if kept is None:
            return result.error or "returns no candidate lists"
        for src, offered, keep in zip(state["pursuers"], state["candidates"], kept):
            moves += [(tuple(src), tuple(c), tuple(c) in keep) for c in offered]
    return moves


def _move_rule(kind: Any, params: dict) -> Callable | None:
    """``(src, dst) -> allowed`` for a pursuer, or None when the rule cannot judge every move."""
    def allows(src: tuple, dst: tuple) -> bool:
        return bool(kind.allows(params, "pursuer", src, dst))
    if not getattr(kind, "judges_every_move", True):
        return None
    try:
        allows((0, 0), (0, 1))
    except Exception:  # e.g. a rule known only by a user's examples
        return None
    return allows


def _expected(state: dict, rule: Callable | None) -> Any:
    if rule is None:
        return PropertiesOnly()
    kept = [[c for c in cells if rule(tuple(p), tuple(c))] for p, cells in zip(state["pursuers"], state["candidates"])]
    return dict(state, candidates=kept)


def _domain_states(build: Callable, size: int, movers: int) -> list:
    """Every cell as a mover's source, ``movers`` movers per state, spread apart."""
    cells = [(x, y) for x in range(size) for y in range(size)]
    movers = max(1, movers)
    per = -(-len(cells) // movers)
    out = []
    for i in range(per):
        pursuers = [cells[(i + j * per) % len(cells)] for j in range(movers)]
        out.append(build(pursuers, _far_cell(pursuers, cells)))
    return out


def _random_states(build: Callable, size: int, reach: int, movers: int, seed: int) -> list:
    rng = random.Random(seed)
    cells = [(x, y) for x in range(size) for y in range(size)]
    out = []
    for i in range(RANDOM_STATES):
        pursuers = [rng.choice(cells) for _ in range(max(1, movers))]
        if i % 4 == 1:
            pursuers[-1] = pursuers[0]                     # movers sharing a cell
        near = [c for c in cells if 1 <= abs(c[0] - pursuers[0][0]) + abs(c[1] - pursuers[0][1]) <= reach]
        evader = rng.choice(near if near and i % 2 else cells)   # half of them: the evader within reach
        while evader in pursuers:
            evader = rng.choice(cells)
        state = build(pursuers, evader)
        if state is not None and i % 3 == 2:               # a thinned candidate list
            state["candidates"] = [[c for c in cand if rng.random() < 0.6] for cand in state["candidates"]]
        out.append(state)
    return out


def _state(template: dict, pursuers: list, evader: tuple, size: int, reach: int) -> dict:
    """``template`` with these movers, this evader, and each mover's legal cells (on the
    board, within ``reach``, not the evader's), in the engine's order."""
    steps = [(dx, dy) for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
             if abs(dx) + abs(dy) <= reach]
    cands = [[[px + dx, py + dy] for dx, dy in steps
              if 0 <= px + dx < size and 0 <= py + dy < size and (px + dx, py + dy) != tuple(evader)]
             for px, py in pursuers]
    return dict(template, pursuers=[list(p) for p in pursuers], evader=list(evader), candidates=cands)


def _far_cell(pursuers: list, cells: list) -> tuple:
    """The first cell at distance >= 3 from every mover (the evader out of everyone's way)."""
    return next((c for c in cells if all(abs(c[0] - p[0]) + abs(c[1] - p[1]) >= 3 for p in pursuers)), cells[-1])


def difference(got: Any, expected: Any) -> str:
    """Which cells a wrong answer kept or dropped (for candidate lists), else a short repr."""
    try:
        for i, (a, b) in enumerate(zip(got["candidates"], expected["candidates"])):
            extra, missing = [c for c in a if c not in b], [c for c in b if c not in a]
            if extra:
                return f"pursuer {i + 1} keeps cells the rule forbids: {extra[:4]}"
            if missing:
                return f"pursuer {i + 1} drops cells the rule allows: {missing[:4]}"
    except (KeyError, TypeError, IndexError):
        pass
    return plain_difference(got, expected)
