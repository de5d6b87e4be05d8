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
from typing import TYPE_CHECKING, Callable, Sequence, Union, cast

from ldengine.contracts import EmergencyKind, TaskBase
from ldengine.errors import SandboxCompileError
from ldengine.sandbox import SandboxResult, compile_function

if TYPE_CHECKING:
    from ldengine.functionbase import FunctionBase
    from ldengine.sandbox import CompiledModule, Sandbox
    from ldengine.sandbox.isolated import IsolatedSandbox

    # what a candidate runs in: an ``IsolatedSandbox`` worker (the in-process ``Sandbox`` calls the same way)
    VerifySandbox = Union[IsolatedSandbox, Sandbox]

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


def check_function(source: str, name: str, cases: Sequence[tuple[object, object]],
                   properties: Callable[[object, object], list[str]], sandbox: VerifySandbox,
                   extra: Sequence[tuple[str, object, object]] = (),
                   difference: Callable[[object, object], str] | None = None) -> Check:
    """Compile ``source`` (one plain def) and run ``name`` on every case, then on every
    ``extra`` (label, input, expected) case, in ``sandbox`` (an ``IsolatedSandbox``); it
    passes if each output keeps the properties and equals the expected output, no call
    takes longer than ``MAX_CALL_S``, and a second run of the first case gives the same
    answer. The first failure rejects it: a hanging candidate costs one deadline.
    ``difference(got, expected)`` words a wrong output (a kind's optional member)."""
    total = len(cases) + len(extra)
    try:
        module = compile_function(source, filename=f"<emergency {name}>")
    except SandboxCompileError as exc:
        return Check(False, [f"rejected before running: {exc}"], total, 0)
    if name not in module.names:
        return Check(False, [f"defines no function {name!r}"], total, 0)
    if callable(getattr(sandbox, "start", None)):
        cast("IsolatedSandbox", sandbox).start()    # a worker's start-up is not the candidate's time
    labelled = [(f"case {i}", given, expected) for i, (given, expected) in enumerate(cases, 1)] + list(extra)
    reasons, passed = [], 0
    for label, given, expected in labelled:
        problem = _judge(_timed_call(sandbox, module, name, given), given, expected, properties, difference)
        if problem:
            reasons.append(f"{label}: {problem}")
            break
        passed += 1
    if labelled and not reasons:
        first, again = sandbox.call(module, name, labelled[0][1]), sandbox.call(module, name, labelled[0][1])
        if not again.ok or again.value != first.value:
            reasons.append(f"{labelled[0][0]} run twice gives another answer")
    return Check(not reasons and passed == total, reasons, total, passed)


def _timed_call(sandbox: VerifySandbox, module: CompiledModule, name: str, given: object) -> SandboxResult:
    """The call's result; one slower than ``MAX_CALL_S`` twice in a row comes back as an error
    (once may be a busy machine), so a function that stalls off the shown cases is refused."""
    for _ in range(2):
        result = sandbox.call(module, name, given)
        if not result.ok or result.duration <= MAX_CALL_S:
            return result
    return SandboxResult(name, error_type="TooSlow",
                         error=f"TooSlow: {result.duration:.2f} s per call (the limit is {MAX_CALL_S} s)")


def verify(kind: EmergencyKind, params: dict, source: str, name: str, sandbox: VerifySandbox,
           cases: list | None = None, seed: int | None = None, case_seed: int = 0,
           game: GameInputs | None = None) -> Check:
    """``check_function`` on the kind's cases (or ``cases``) and on ``verification_cases``
    drawn with ``seed`` (None: a fresh one, recorded in the result); with ``game``, those
    inputs are the stage's real inputs in a game (``game_inputs``)."""
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    cases = kind.cases(params, case_seed) if cases is None else cases
    start = time.perf_counter()
    check = check_function(source, name, cases, kind.properties, sandbox,
                           verification_cases(kind, params, cases, seed, game), getattr(kind, "difference", None))
    check.seed, check.seconds = seed, round(time.perf_counter() - start, 3)
    return check


# ---- inputs the student never saw ------------------------------------------------------------

@dataclass(frozen=True)
class PropertiesOnly:
    """The expected output of an input whose right answer nobody can compute (a rule known
    only by a user's examples): only the properties are checked on it."""

    def problem(self, out: object) -> str | None:
        return None


@dataclass
class GameInputs:
    """How a game makes the input of the emergency's stage: a real first state (``o_0``) as the
    template, and ``upstream``, the teacher's stages up to ``kind.after`` run on a state. With
    it, verification inputs carry every key a game's do (``step``, ``emergency``, what the
    earlier stages add), computed by the same functions, so a function cannot tell them apart
    from play by their shape."""
    template: dict
    upstream: Callable[[dict], object]

    def make(self, **fields: object) -> dict | None:
        """The stage's input for the template with ``fields`` changed (None when the upstream
        stages fail on it or return no state)."""
        out = self.upstream(dict(self.template, **fields))
        return out if isinstance(out, dict) else None


def game_inputs(task: TaskBase, base: FunctionBase, kind: EmergencyKind) -> GameInputs | None:
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

    def upstream(state: dict) -> object:
        value: object = state
        for stage in stages:
            result = base.call(base.oracle(stage, value).name, value)
            if not result.ok:
                return None
            value = result.value
        return value
    return GameInputs(template, upstream)


def verification_cases(kind: EmergencyKind, params: dict, cases: list, seed: int,
                       game: GameInputs | None = None) -> list[tuple[str, object, object]]:
    """(label, input, expected) beyond the shown cases: the inputs of the kind's own domain
    (its optional ``domain_cases(params, cases, seed, game)``, e.g. every single move of a
    board and random states drawn with ``seed``, as a game computes them with ``game``), then
    the kind's own cases for ``seed``. Expected outputs are the rule's answers, or
    ``PropertiesOnly`` where the rule cannot judge an input."""
    fresh = [(f"fresh case {i} (seed {seed})", given, expected)
             for i, (given, expected) in enumerate(_fresh_cases(kind, params, seed), 1)]
    domain = getattr(kind, "domain_cases", None)
    return (list(domain(params, cases, seed, game)) if callable(domain) else []) + fresh


def _fresh_cases(kind: EmergencyKind, params: dict, seed: int) -> list:
    try:
        return list(kind.cases(params, seed))
    except Exception:  # a kind whose cases take no seed: the shown ones are all it has
        return []


def _judge(result: SandboxResult, given: object, expected: object,
           properties: Callable[[object, object], list[str]],
           difference: Callable[[object, object], str] | None = None) -> str | None:
    if not result.ok:
        return result.error
    problems = properties(given, result.value)
    if problems:
        return problems[0]
    if hasattr(expected, "problem"):            # a partial expectation (a user's example)
        return expected.problem(result.value)
    if result.value != expected:        # the kind's words for how it differs, else a short repr of both
        return (difference or plain_difference)(result.value, expected)
    return None


def plain_difference(got: object, expected: object) -> str:
    """A wrong output beside the expected one, each cut short (a kind's ``difference`` says more)."""
    return f"returns {str(got)[:120]}, expected {str(expected)[:120]}"
