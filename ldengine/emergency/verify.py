"""Verification of a candidate function: its cases, then inputs the student never saw.

Verification cannot be fooled by the cases alone: besides the kind's cases, each
candidate meets every single move of the board (every cell as a mover's source, every
legal destination from it) and random states drawn at verification time from a fresh
seed that the check records. Outputs are compared with the rule's own answer
(``kind.allows``) where the rule can judge every move, and the properties are checked
on every one.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ldengine.contracts import EmergencyKind, TaskBase
from ldengine.errors import SandboxCompileError
from ldengine.sandbox import SandboxResult, compile_function

RANDOM_STATES = 64          # fresh random states per verification, besides the whole move domain
MAX_CALL_S = 0.25           # one call of a verified function (~0.3 ms when right); slower is rejected


@dataclass
class Check:
    """What verification found: passed only if every case and property held. ``seed``:
    the fresh seed the random states were drawn with (None: none were drawn)."""
    passed: bool
    reasons: list[str]
    cases: int
    cases_passed: int
    seed: int | None = None
    seconds: float = 0.0

    def line(self) -> str:
        if self.passed:
            return f"passed {self.cases_passed}/{self.cases} cases"
        return f"failed ({self.cases_passed}/{self.cases} cases passed): " + "; ".join(self.reasons[:2])


def check_function(source: str, name: str, cases: list[tuple[Any, Any]],
                   properties: Callable[[Any, Any], list[str]], sandbox: Any,
                   extra: Sequence[tuple[str, Any, Any]] = ()) -> Check:
    """Compile ``source`` (one plain def) and run ``name`` on every case, then on every
    ``extra`` (label, input, expected) case, in ``sandbox`` (an ``IsolatedSandbox``); it
    passes if each output keeps the properties and equals the expected output, no call
    takes longer than ``MAX_CALL_S``, and a second run of the first case gives the same
    answer. The first failure rejects it: a hanging candidate costs one deadline."""
    total = len(cases) + len(extra)
    try:
        module = compile_function(source, filename=f"<emergency {name}>")
    except SandboxCompileError as exc:
        return Check(False, [f"rejected before running: {exc}"], total, 0)
    if name not in module.names:
        return Check(False, [f"defines no function {name!r}"], total, 0)
    if callable(getattr(sandbox, "start", None)):
        sandbox.start()         # a worker's start-up is not the candidate's time
    labelled = [(f"case {i}", given, expected) for i, (given, expected) in enumerate(cases, 1)] + list(extra)
    reasons, passed = [], 0
    for label, given, expected in labelled:
        problem = _judge(_timed_call(sandbox, module, name, given), given, expected, properties)
        if problem:
            reasons.append(f"{label}: {problem}")
            break
        passed += 1
    if labelled and not reasons:
        first, again = sandbox.call(module, name, labelled[0][1]), sandbox.call(module, name, labelled[0][1])
        if not again.ok or again.value != first.value:
            reasons.append(f"{labelled[0][0]} run twice gives another answer")
    return Check(not reasons and passed == total, reasons, total, passed)


def _timed_call(sandbox: Any, module: Any, name: str, given: Any) -> Any:
    """The call's result; one slower than ``MAX_CALL_S`` twice in a row comes back as an error
    (once may be a busy machine), so a function that stalls off the shown cases is refused."""
    for _ in range(2):
        result = sandbox.call(module, name, given)
        if not result.ok or result.duration <= MAX_CALL_S:
            return result
    return SandboxResult(name, error_type="TooSlow",
                         error=f"TooSlow: {result.duration:.2f} s per call (the limit is {MAX_CALL_S} s)")


def verify(kind: EmergencyKind, params: dict, source: str, name: str, sandbox: Any, cases: list | None = None,
           seed: int | None = None, case_seed: int = 0, game: GameInputs | None = None) -> Check:
    """``check_function`` on the kind's cases (or ``cases``) and on ``verification_cases``
    drawn with ``seed`` (None: a fresh one, recorded in the result); with ``game``, those
    inputs are the stage's real inputs in a game (``game_inputs``)."""
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    cases = kind.cases(params, case_seed) if cases is None else cases
    start = time.perf_counter()
    check = check_function(source, name, cases, kind.properties, sandbox,
                           verification_cases(kind, params, cases, seed, game))
    check.seed, check.seconds = seed, round(time.perf_counter() - start, 3)
    return check


# ---- inputs the student never saw ------------------------------------------------------------

@dataclass(frozen=True)
class PropertiesOnly:
    """The expected output of an input whose right answer nobody can compute (a rule known
    only by a user's examples): only the properties are checked on it."""

    def problem(self, out: Any) -> str | None:
        return None


@dataclass
class GameInputs:
    """How a game makes the input of the emergency's stage: a real first state (``o_0``) as the
    template, and ``upstream``, the teacher's stages up to ``kind.after`` run on a state. With
    it, verification inputs carry every key a game's do (``step``, ``emergency``, what the
    earlier stages add), computed by the same functions, so a function cannot tell them apart
    from play by their shape."""
    template: dict
    upstream: Callable[[dict], Any]

    def make(self, pursuers: list, evader: tuple, step: int) -> dict | None:
        state = dict(self.template, pursuers=[list(p) for p in pursuers], evader=list(evader), step=step)
        out = self.upstream(state)
        return out if isinstance(out, dict) and {"pursuers", "candidates"} <= set(out) else None


def game_inputs(task: TaskBase, base: Any, kind: EmergencyKind) -> GameInputs | None:
    """``GameInputs`` for ``kind`` in ``task`` (the emergency in force), from ``base``'s right
    function per stage; None for a task without seeded game states."""
    if task.game_steps is None or kind.after not in task.pipeline:
        return None
    try:
        steps = task.game_steps(0, 0, lambda *args: None, lambda record: None)
        template = json.loads(json.dumps(next(steps)))
        steps.close()
    except Exception:  # a task whose games cannot start without more: synthetic inputs only
        return None
    stages = task.pipeline[:task.pipeline.index(kind.after) + 1]

    def upstream(state: dict) -> Any:
        value = state
        for stage in stages:
            result = base.call(base.oracle(stage, value).name, value)
            if not result.ok:
                return None
            value = result.value
        return value
    return GameInputs(template, upstream)


def verification_cases(kind: EmergencyKind, params: dict, cases: list, seed: int,
                       game: GameInputs | None = None) -> list[tuple[str, Any, Any]]:
    """(label, input, expected) beyond the shown cases, for a rule over single moves whose
    cases are states with ``pursuers``, ``candidates``, ``size`` and ``reach``: every cell of
    the board as a mover's source with every legal destination from it (the whole single-move
    domain, three movers per state), then ``RANDOM_STATES`` states drawn with ``seed``
    (movers anywhere, sharing cells, the evader next to them, candidate lists thinned at
    random), then the kind's own cases for ``seed``. With ``game`` each state is the stage's
    input as a game computes it (``GameInputs``); without, the cases' shape. Expected outputs
    come from the rule (``kind.allows``); a rule that cannot judge every move gets
    ``PropertiesOnly``. Any other shape of state gets only the kind's cases for ``seed``."""
    template = cases[0][0] if cases and isinstance(cases[0][0], dict) else None
    fresh = [(f"fresh case {i} (seed {seed})", given, expected)
             for i, (given, expected) in enumerate(_fresh_cases(kind, params, seed), 1)]
    if template is None or not {"pursuers", "candidates", "size", "reach"} <= set(template):
        return fresh
    size, reach = int(template["size"]), int(template["reach"])
    steps = random.Random(seed)

    def build(pursuers: list, evader: tuple) -> dict | None:
        if game is not None:
            return game.make(pursuers, evader, steps.randrange(100))
        return _state(template, pursuers, evader, size, reach)
    rule = _move_rule(kind, params)
    states = [("move domain", s) for s in _domain_states(build, size, len(template["pursuers"]))]
    states += [(f"random state (seed {seed})", s)
               for s in _random_states(build, size, reach, len(template["pursuers"]), seed)]
    labelled = [(f"{what} {i}: movers at {state['pursuers']}, evader at {state['evader']}", state, _expected(state, rule))
                for i, (what, state) in enumerate(states, 1) if state is not None]
    return labelled + fresh


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


def _fresh_cases(kind: EmergencyKind, params: dict, seed: int) -> list:
    try:
        return list(kind.cases(params, seed))
    except Exception:  # a kind whose cases take no seed: the shown ones are all it has
        return []


def _move_rule(kind: EmergencyKind, params: dict) -> Callable | None:
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


def _judge(result: Any, given: Any, expected: Any, properties: Callable) -> str | None:
    if not result.ok:
        return result.error
    problems = properties(given, result.value)
    if problems:
        return problems[0]
    if hasattr(expected, "problem"):            # a partial expectation (a user's example)
        return expected.problem(result.value)
    if result.value != expected:
        return _difference(result.value, expected)
    return None


def _difference(got: Any, expected: Any) -> str:
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
    return f"returns {str(got)[:120]}, expected {str(expected)[:120]}"
