"""Emergencies: a new rule appears, the student writes a function for it (Eq. 6 of
the paper), the isolated sandbox verifies it, and the function base takes it in.

An emergency kind is a plugin object (``ldengine_register_emergencies``) with
``name``, ``task``, ``stage`` and ``after`` (where its function goes in the
pipeline), ``split`` ("eval" or "train"), ``params(seed, size)``,
``describe(params)``, ``header(params, name)`` (the def line and the manual
entry the engine writes; the student writes the body), ``cases(params, seed)``
((input, expected output) pairs), ``properties(input, output)`` (what any
answer must keep, e.g. "returns a subset of its input") and
``reference(params)`` (the teacher's function, for training and examples).

Generated code is hostile until proven otherwise: every candidate is compiled
with the sandbox's policy here, but loaded and run only in an
``IsolatedSandbox`` worker (CPU, memory, wall-clock limits), during
verification and during play alike.

Verification cannot be fooled by the cases alone: besides the kind's cases,
each candidate meets inputs nobody showed the student (``verification_cases``):
every single move of the board (every cell as a mover's source, every legal
destination from it), and random states drawn at verification time from a fresh
seed that the check records. Outputs are compared with the rule's own answer
(``kind.allows``) where the rule can judge every move, and the properties are
checked on every one. A stored function is refused (``StoredCodeChanged``) when
its file no longer has the sha256 its provenance recorded, then verified again.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ldengine.cache import write_atomic
from ldengine.errors import LDEngineError, SandboxCompileError, UnknownNameError
from ldengine.functionbase import FunctionBase, StoredCodeChanged, check_file, text_sha256
from ldengine.sandbox import SandboxResult

DEFAULT_ATTEMPTS = 8
# Attempts after the first (greedy) one are sampled. Hot on purpose: when the greedy body
# miscopies the rule (e.g. the wall's "py" written as "x"), samples at 0.8 made the same
# slip (wall: 7/10 seeds within 8 attempts); at 1.2 every held-out seed passed within 8.
TEMPERATURE = 1.2
MAX_NEW_TOKENS = 160
RANDOM_STATES = 64          # fresh random states per verification, besides the whole move domain
MAX_CALL_S = 0.25           # one call of a verified function (~0.3 ms when right); slower is rejected
FUNCTION_ROOT = Path(__file__).resolve().parent.parent / "function_base"


@dataclass(frozen=True)
class Instance:
    """An emergency in force: its kind and its drawn parameters."""
    kind: Any
    params: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        return self.kind.describe(self.params)

    def state(self) -> dict:
        """How the state shows it (plain data): name, rule text, parameters."""
        return {"name": self.kind.name, "rule": self.description, "params": dict(self.params)}

    def allows(self, piece: str, src: Any, dst: Any) -> bool:
        return self.kind.allows(self.params, piece, src, dst)


def under_emergency(registry: Any, task: Any, name: str | None, seed: int = 0) -> Any:
    """``task`` with the emergency ``name`` in force, or ``task`` itself when ``name`` is
    empty. ``name`` is a registered kind (its parameters drawn with ``seed``) or a stored
    function (``ldengine emergencies stored``: the rule it was written for, a user's own
    included, with its stored parameters)."""
    if not name:
        return task
    if name in registry.emergencies:
        kind = registry.emergencies[name].obj
        instance = Instance(kind, kind.params(seed, getattr(task, "size", 21)))
    else:
        instance = stored_instance(registry, task.name, name)
    if instance.kind.task != task.name or not hasattr(task, "with_emergency"):
        raise LDEngineError(f"emergency {name!r} is for the {instance.kind.task} task, not {task.name}")
    return task.with_emergency(instance)


def stored_instance(registry: Any, task: str, name: str) -> Instance:
    """The rule and parameters of the stored function ``name`` (its file's stem, or its
    rule's name, e.g. ``custom-1a2b3c4d``), read from its provenance."""
    found = [(path, p) for path, p in stored_provenances(task) if name in (path.stem, p.get("kind"))]
    if not found:
        known = ", ".join(sorted(registry.emergencies)) or "none"
        stored = ", ".join(path.stem for path, _ in stored_provenances(task)) or "none"
        raise UnknownNameError(f"unknown emergency {name!r} (known: {known}; stored for {task}: {stored})")
    if len(found) > 1:
        raise LDEngineError(f"several stored functions are for {name!r}: "
                            f"{', '.join(path.stem for path, _ in found)}; name one")
    path, provenance = found[0]
    kind = stored_rule(registry, task, provenance)
    if kind is None:
        raise LDEngineError(f"{path.name}: its provenance records no rule a game can apply")
    return Instance(kind, dict(provenance.get("params") or {}))


def stored_provenances(task: str) -> list[tuple[Path, dict]]:
    """(module path, provenance) of every function stored for ``task``; unreadable ones left out."""
    folder = store_dir(task)
    out = []
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        try:
            out.append((path, read_stored_provenance(path)))
        except StoredCodeChanged:
            continue
    return out


def stored_rule(registry: Any, task: str, provenance: dict) -> Any:
    """The rule a stored function was written for: registered, or a user's own rebuilt from
    the provenance (its words, examples and the kind it is checked like); None if neither."""
    if provenance.get("kind") in registry.emergencies:
        return registry.emergencies[provenance["kind"]].obj
    rule, game = provenance.get("custom_rule"), registry.tasks.get(task)
    if not rule or game is None or not hasattr(game.obj, "custom_emergency"):
        return None
    like = registry.emergencies[rule["like"]].obj if rule.get("like") in registry.emergencies else None
    return game.obj.custom_emergency(rule["text"], provenance.get("params") or {}, rule.get("allowed", []),
                                     rule.get("forbidden", []), like=like)


def check_rule_text(text: str) -> str:
    """``text`` if it can be a rule in words: not empty, with at least one letter."""
    if not re.search(r"[^\W\d_]", text or ""):
        raise LDEngineError(f"the rule {text!r} has no words: say the new rule in words, e.g. "
                            "ldengine emergency \"Pursuers may not enter column 10\" --forbid 10,5 --allow 9,5")
    return text


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


@dataclass
class Attempt:
    number: int
    temperature: float
    seed: int
    source: str
    check: Check


@dataclass
class Written:
    """The outcome of writing a function for one emergency instance."""
    kind: str
    params: dict
    name: str
    attempts: list[Attempt] = field(default_factory=list)
    source: str | None = None          # the accepted function, if any
    provenance: dict = field(default_factory=dict)
    path: Path | None = None           # where the accepted module is stored
    check: Check | None = None         # the last verification of the accepted function

    @property
    def passed(self) -> bool:
        return self.source is not None

    @property
    def attempts_to_pass(self) -> int | None:
        return len(self.attempts) if self.passed else None


# ---- verification --------------------------------------------------------------------------

def check_function(source: str, name: str, cases: list[tuple[Any, Any]],
                   properties: Callable[[Any, Any], list[str]], sandbox: Any,
                   extra: list[tuple[str, Any, Any]] = ()) -> Check:
    """Compile ``source`` (one plain def) and run ``name`` on every case, then on every
    ``extra`` (label, input, expected) case, in ``sandbox`` (an ``IsolatedSandbox``); it
    passes if each output keeps the properties and equals the expected output, no call
    takes longer than ``MAX_CALL_S``, and a second run of the first case gives the same
    answer. The first failure rejects it: a hanging candidate costs one deadline."""
    from ldengine.sandbox import compile_function
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


def verify(kind: Any, params: dict, source: str, name: str, sandbox: Any, cases: list | None = None,
           seed: int | None = None, case_seed: int = 0, game: "GameInputs | None" = None) -> Check:
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


def game_inputs(task: Any, base: Any, kind: Any) -> GameInputs | None:
    """``GameInputs`` for ``kind`` in ``task`` (the emergency in force), from ``base``'s right
    function per stage; None for a task without seeded game states."""
    if not callable(getattr(task, "game_steps", None)) or kind.after not in task.pipeline:
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


def verification_cases(kind: Any, params: dict, cases: list, seed: int,
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


def _fresh_cases(kind: Any, params: dict, seed: int) -> list:
    try:
        return list(kind.cases(params, seed))
    except Exception:  # a kind whose cases take no seed: the shown ones are all it has
        return []


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


# ---- writing (Eq. 6) -----------------------------------------------------------------------

def examples_prefix(examples: list[str]) -> str:
    """The part of the writing prompt every emergency shares: the manual's worked emergency
    functions (its keys and values are computed once per student and kept)."""
    return ("# Functions for new rules of the game. Each keeps, for every pursuer at (px, py), only\n"
            "# the candidate cells (x, y) that the rule allows.\n\n"
            + "".join(e.rstrip() + "\n\n\n" for e in examples))


def writing_prompt(examples: list[str], header: str) -> str:
    """The whole prompt: the worked examples, then the new function's def line and manual
    entry; the student continues with its body."""
    return examples_prefix(examples) + header


def body_done(text: str) -> bool:
    """A stop test for writing: the body returned at its own level (four spaces; a return
    nested in an ``if`` does not end it), or an unindented line began."""
    lines = text.split("\n")[:-1]          # complete lines only
    return any((line.startswith("    return") and not line.startswith("     "))
               or (line.strip() and not line[:1].isspace()) for line in lines)


def body_of(completion: str) -> str:
    """The function body a completion starts with: its lines up to the first unindented one."""
    lines = []
    for line in completion.splitlines():
        if line.strip() and not line[:1].isspace():
            break
        lines.append(line.rstrip())
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n"


def write_function(kind: Any, params: dict, student: Any, examples: list[str], attempts: int = DEFAULT_ATTEMPTS,
                   seed: int = 0, cases: list | None = None, name: str | None = None,
                   report: Callable[[Attempt], None] = lambda a: None, verify_seed: int | None = None,
                   game: GameInputs | None = None) -> Written:
    """Up to ``attempts`` candidates (greedy first, then sampled), each verified in an
    isolated sandbox worker (replaced whenever a candidate kills it) on the cases and on
    inputs drawn with ``verify_seed`` (None: a fresh seed, recorded in each attempt's
    check), game-shaped with ``game``; the first that passes is accepted."""
    from ldengine.sandbox import IsolatedSandbox
    name = name or kind.function_name()
    header = kind.header(params, name)
    prefix, prompt = examples_prefix(examples), writing_prompt(examples, header)
    cases = cases if cases is not None else kind.cases(params, seed)
    verify_seed = random.SystemRandom().randrange(2**31) if verify_seed is None else verify_seed
    written = Written(kind.name, dict(params), name)
    with IsolatedSandbox() as sandbox:
        for number, temperature, sample_seed, text in _completions(student, prefix, header, attempts, seed):
            source = header + body_of(text)
            check = (verify(kind, params, source, name, sandbox, cases, verify_seed, game=game) if body_of(text).strip()
                     else Check(False, ["the student wrote no function body"], len(cases), 0))
            attempt = Attempt(number, temperature, sample_seed, source, check)
            written.attempts.append(attempt)
            report(attempt)
            if attempt.check.passed:
                written.source = source
                break
    written.provenance = _provenance(kind, written, student, prompt, cases)
    return written


def _completions(student: Any, prefix: str, header: str, attempts: int, seed: int):
    """(number, temperature, seed, text): one greedy answer, then sampled ones, four at a time."""
    if attempts < 1:
        return
    def write(n: int, temperature: float, sample_seed: int) -> list[str]:
        return student.generate_batch([header] * n, prefix=prefix, max_new_tokens=MAX_NEW_TOKENS,
                                      stop=body_done, chat=False, temperature=temperature, seed=sample_seed)
    yield 1, 0.0, seed, write(1, 0.0, seed)[0]
    number = 1
    while number < attempts:
        n = min(4, attempts - number)
        for text in write(n, TEMPERATURE, seed + number):
            number += 1
            yield number, TEMPERATURE, seed + number - 1, text


def _provenance(kind: Any, written: Written, student: Any, prompt: str, cases: list) -> dict:
    return {"kind": kind.name, "task": kind.task, "params": written.params, "function": written.name,
            "rule": kind.describe(written.params), "stage": kind.stage, "after": kind.after,
            "model": getattr(student, "name", None), "model_sha256": getattr(student, "model_hash", None),
            "adapter_hash": getattr(student, "adapter_hash", None),
            "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
            "cases_sha256": hashlib.sha256(json.dumps(cases, sort_keys=True, default=repr).encode()).hexdigest(),
            "attempts": [{"number": a.number, "temperature": a.temperature, "seed": a.seed,
                          "passed": a.check.passed, "check": asdict(a.check),
                          "source_sha256": hashlib.sha256(a.source.encode()).hexdigest()}
                         for a in written.attempts],
            "accepted_attempt": written.attempts_to_pass, "version": "1.0.0",
            **({"custom_rule": _custom_rule(kind)} if hasattr(kind, "allowed") else {})}


def _custom_rule(kind: Any) -> dict:
    """What rebuilds a rule nobody registered (a user's words and examples), so that
    ``ldengine generated verify`` can check its function again."""
    def moves(items: Any) -> list:
        return [[list(src), list(dst)] for src, dst in items]
    return {"text": kind.text, "allowed": moves(kind.allowed), "forbidden": moves(kind.forbidden),
            "like": getattr(kind.like, "name", None)}


# ---- the store under function_base/ --------------------------------------------------------

def store_dir(task: str) -> Path:
    """Where verified functions live: ``$LDENGINE_EMERGENCY_DIR`` or ``function_base/<task>/emergencies``."""
    root = os.environ.get("LDENGINE_EMERGENCY_DIR")
    return Path(root) / task if root else FUNCTION_ROOT / task / "emergencies"


def params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def module_path(kind: Any, params: dict, folder: Path | None = None) -> Path:
    return (folder or store_dir(kind.task)) / f"{kind.name}-{params_key(params)}.py"


def module_source(written: Written) -> str:
    return (f'"""Written by the student for the emergency {written.kind} {json.dumps(written.params)};\n'
            f'verified in the isolated sandbox. Provenance: the .json file beside this one."""\n\n'
            f'VERSION = "1.0.0"\n\n\n{written.source}')


def save(written: Written, folder: Path | None = None, kind: Any = None) -> Path:
    """Store an accepted function and its provenance (atomically, never half-written); the
    provenance records the module file's sha256, checked whenever it is loaded."""
    if not written.passed:
        raise LDEngineError(f"no verified function for {written.kind} to store")
    path = (folder or store_dir(written.provenance["task"])) / f"{written.kind}-{params_key(written.params)}.py"
    text = module_source(written)
    written.provenance = {**written.provenance, "file": path.name, "module_sha256": text_sha256(text)}
    write_atomic(path.with_suffix(".json"), json.dumps(written.provenance, indent=2).encode())
    write_atomic(path, text.encode())
    written.path = path
    return path


def load_stored(kind: Any, params: dict, folder: Path | None = None, seed: int = 0,
                log: Callable[[str], None] = lambda s: None, game: GameInputs | None = None) -> Written | None:
    """A stored function for this instance, or None. A file changed since it was stored is
    refused (``StoredCodeChanged``); an unchanged one is verified again, on fresh inputs too,
    and None when it fails (say, against a stricter verification than it once passed)."""
    from ldengine.sandbox import IsolatedSandbox
    path = module_path(kind, params, folder)
    if not path.is_file() or not path.with_suffix(".json").is_file():
        return None
    provenance = read_stored_provenance(path)
    check_stored(path, provenance)
    name = provenance.get("function", kind.function_name())
    source = function_text(path.read_text(encoding="utf-8"), name)
    with IsolatedSandbox() as sandbox:
        check = verify(kind, params, source, name, sandbox, case_seed=seed, game=game)
    if not check.passed:
        log(f"{kind.name}: the stored {path.name} fails verification now ({check.line()}); not used")
        return None
    return Written(kind.name, dict(params), name, [], source, provenance, path, check)


def read_stored_provenance(path: Path) -> dict:
    """The .json provenance beside a stored function."""
    try:
        provenance = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoredCodeChanged(f"{path.with_suffix('.json')}: unreadable provenance ({exc})") from None
    if not isinstance(provenance, dict):
        raise StoredCodeChanged(f"{path.with_suffix('.json')}: the provenance is not a JSON object")
    return provenance


def check_stored(path: Path, provenance: dict) -> None:
    """Refuse a stored function whose file is not the one stored: its sha256 against the
    recorded ``module_sha256``. A module stored before that field existed must be exactly the
    text the engine writes around its accepted attempt's function (whose sha256 was recorded)."""
    recorded = provenance.get("module_sha256") or _legacy_module_sha256(path, provenance)
    check_file(path, recorded, f"restore it, or remove it: ldengine generated remove {path.stem} "
                               f"--task {provenance.get('task', 'TASK')}")


def _legacy_module_sha256(path: Path, provenance: dict) -> str | None:
    attempts, number = provenance.get("attempts") or [], provenance.get("accepted_attempt")
    if not isinstance(number, int) or not 1 <= number <= len(attempts) or not path.is_file():
        return None
    function = function_text(path.read_text(encoding="utf-8", errors="replace"), str(provenance.get("function")))
    if text_sha256(function) != attempts[number - 1].get("source_sha256"):
        return attempts[number - 1].get("source_sha256")
    return text_sha256(module_source(Written(str(provenance.get("kind")), provenance.get("params") or {},
                                             str(provenance.get("function")), source=function)))


def function_text(module_text: str, name: str) -> str:
    """The ``def name`` of a stored module, as text (read with ``ast``, never executed)."""
    import ast
    try:
        tree = ast.parse(module_text)
    except SyntaxError:
        return ""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return (ast.get_source_segment(module_text, node) or "") + "\n"
    return ""


# ---- adopting a function: what an agent does when the emergency appears --------------------

def worked_examples(registry: Any, task: str, seed: int = 0) -> list[str]:
    """The manual's emergency functions shown in the writing prompt: the teacher's reference
    functions of some training kinds (never of an evaluated kind)."""
    train = [r.obj for r in registry.emergencies.values() if r.obj.task == task and r.obj.split == "train"]
    chosen = [k for k in train if getattr(k, "example", False)] or train[:3]
    return [k.reference(k.params(seed)) for k in chosen]


def adopt(context: Any, log: Callable[[str], None] = lambda s: None) -> Written | None:
    """The emergency in force on ``context.task``: its stored verified function, or one the
    student writes now (stored when it passes); an accepted one joins ``context.base``
    as untrusted code. Returns None when no emergency is in force."""
    instance = getattr(context.task, "emergency", None)
    if instance is None:
        return None
    kind, params = instance.kind, instance.params
    game = game_inputs(context.task, context.base, kind)        # verify on what this game will feed it
    written = load_stored(kind, params, log=log, game=game)
    if written is not None:
        log(f"{kind.name}: using the verified function {written.path.name} (verified again: {written.check.line()}, "
            f"fresh seed {written.check.seed}, {written.check.seconds:.2f} s)")
    else:
        writer = context.load_student(adapter=writing_adapter(context))
        attempts = int(context.options.get("attempts") or DEFAULT_ATTEMPTS)
        log(f"{kind.name}: the student writes a function ({attempts} attempts at most)")
        written = write_function(kind, params, writer, worked_examples(context.registry, kind.task),
                                 attempts, report=lambda a: log(f"  attempt {a.number}: {a.check.line()}"), game=game)
        if written.passed:
            save(written)
    if written.passed:
        context.base.add_generated(module_source(written), f"{kind.task}/emergencies/{written.path.name}")
    else:
        log(f"{kind.name}: no function passed verification in {len(written.attempts)} attempts; "
            "playing on without one")
    return written


def writing_adapter(context: Any) -> Path | None:
    """The committed LoRA adapter for writing emergency functions, if there is one."""
    from ldengine.ld import find_adapter
    if context.options.get("writer_adapter"):
        return Path(context.options["writer_adapter"])
    try:
        return find_adapter(context.task.name, context.base, method="write")
    except LDEngineError:
        return None


def with_stage(pipeline: list[str], stage: str, after: str) -> list[str]:
    """``pipeline`` with ``stage`` inserted right after ``after``."""
    out = []
    for name in pipeline:
        out.append(name)
        if name == after:
            out.append(stage)
    if stage not in out:
        raise LDEngineError(f"the pipeline has no stage {after!r} to put {stage!r} after")
    return out


# ---- teaching the student to write (LoRA on other kinds) and measuring it --------------------

def kinds_of(registry: Any, task: str, split: str) -> list[Any]:
    return [r.obj for r in registry.emergencies.values() if r.obj.task == task and r.obj.split == split]


def writing_data(registry: Any, task: str, seeds: list[int]) -> list[tuple[str, str, str]]:
    """(prefix, header, body) for the training kinds only: the evaluated kinds are held out.
    Kinds without parameters give one example each."""
    prefix = examples_prefix(worked_examples(registry, task))
    rows = {}
    for kind in kinds_of(registry, task, "train"):
        for seed in seeds:
            params = kind.params(seed)
            head, full = kind.header(params), kind.reference(params)
            rows[(kind.name, json.dumps(params, sort_keys=True))] = (prefix, head, full[len(head):])
    return list(rows.values())


def pass_rates(registry: Any, task: str, student: Any, kinds: list[Any], seeds: list[int],
               attempts: int = DEFAULT_ATTEMPTS, progress: bool = True) -> dict:
    """For each kind: over ``seeds`` (each draws the rule's parameters and the verification
    cases), the share whose function passed within ``attempts``, and the attempts it took."""
    from tqdm.auto import tqdm
    examples = worked_examples(registry, task)
    game_task, base = registry.get("tasks", task).obj, FunctionBase.build(task, registry.modules_for(task))
    out = {}
    bar = tqdm(total=len(kinds) * len(seeds), desc="writing", unit="rule", disable=not progress)
    for kind in kinds:
        took = []
        for seed in seeds:
            params = kind.params(seed)
            game = game_inputs(game_task.with_emergency(Instance(kind, params)), base, kind)
            written = write_function(kind, params, student, examples, attempts, seed, game=game)
            took.append(written.attempts_to_pass)
            bar.update(1)
        passed = [t for t in took if t is not None]
        out[kind.name] = {"seeds": len(seeds), "passed": len(passed), "pass_rate": round(len(passed) / len(seeds), 4),
                          "attempts_to_pass": took,
                          "mean_attempts_to_pass": round(sum(passed) / len(passed), 2) if passed else None}
    bar.close()
    return out


def measure(registry: Any, task: str, kinds: list[Any], seeds: list[int], attempts: int, games: int,
            out: Path, options: dict, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """The table over emergencies: per kind, the writing pass rate over ``seeds`` (attempts to
    first pass) and, with the kind in force, LD's and the unadapted expert's games (an eval
    run per kind under ``out/KIND``, resumable)."""
    from ldengine.agents import AgentContext
    from ldengine.evaluate import EvalConfig, evaluate
    from ldengine.functionbase import FunctionBase
    context = AgentContext(registry.get("tasks", task).obj, FunctionBase.build(task, registry.modules_for(task)),
                           options, registry)
    adapter = writing_adapter(context)
    writer = context.load_student(adapter=adapter)
    rows = {}
    for kind in kinds:
        rates = pass_rates(registry, task, writer, [kind], seeds, attempts, progress)[kind.name]
        log(f"{kind.name}: functions passed for {rates['passed']}/{rates['seeds']} seeds")
        cfg = EvalConfig(task, ["ld", "expert"], games, 0, "greedy", str(out / kind.name), resume=True,
                         figures=False, progress=progress, options=options, emergency=kind.name,
                         command=f"ldengine emergencies measure --task {task} (kind {kind.name})")
        results = evaluate(registry, cfg, log)["agents"]
        rows[kind.name] = {"split": kind.split, "writing": rates, "ld": _short(results.get("ld", {})),
                           "expert": _short(results.get("expert", {}))}
    report = {"task": task, "attempts": attempts, "temperature": TEMPERATURE, "seeds": seeds, "games": games,
              "writer_adapter": Path(adapter).name if adapter else None,
              "writer_adapter_hash": getattr(writer, "adapter_hash", None), "kinds": rows}
    write_atomic(out / "results.json", (json.dumps(report, indent=2) + "\n").encode())
    write_atomic(out / "table.md", measure_table(report).encode())
    return report


def _short(summary: dict) -> dict:
    keys = ("games", "success", "success_ci95", "failure_with_violation", "failure_without_violation",
            "avg_steps_success", "violations", "emergency_function", "not_run")
    return {k: summary[k] for k in keys if k in summary}


def measure_table(report: dict) -> str:
    head = ["Emergency", "Held out of training", f"Functions passing within {report['attempts']} attempts",
            "Mean attempts to first pass", "LD success", "LD failure with violation",
            "Expert (not adapted) success", "Expert failure with violation"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in report["kinds"].items():
        w, ld, ex = row["writing"], row["ld"], row["expert"]
        lines.append("| " + " | ".join([
            name, "yes" if row["split"] == "eval" else "no",
            f"{w['passed']}/{w['seeds']} ({100 * w['pass_rate']:.0f}%)",
            "-" if w["mean_attempts_to_pass"] is None else f"{w['mean_attempts_to_pass']:.2f}",
            _rate(ld, "success"), _rate(ld, "failure_with_violation"),
            _rate(ex, "success"), _rate(ex, "failure_with_violation")]) + " |")
    lines += ["", f"{report['task']}: writing measured over parameter seeds {report['seeds'][0]}-"
              f"{report['seeds'][-1]} (each draws the rule, the cases and the sampling; attempt 1 greedy, "
              f"then sampled at temperature {report.get('temperature', 0.8)}); games: "
              f"{report['games']} per agent, seeds 0-{report['games'] - 1}, emergency seed 0."]
    return "\n".join(lines) + "\n"


def _rate(summary: dict, key: str) -> str:
    if "not_run" in summary:
        return "not run"
    if key not in summary:
        return "-"
    return f"{100 * summary[key]:.1f}%"


# ---- teaching the student to select the new stage's function ---------------------------------

def reference_module(kind: Any, params: dict) -> str:
    """The teacher's function for an instance, as a module the function base can take in."""
    return (f'"""The teacher\'s reference function for the emergency {kind.name} {json.dumps(params)}."""\n\n'
            f'VERSION = "1.0.0"\n\n\n{kind.reference(params)}')


def emergency_selection_examples(registry: Any, task: Any, kinds: list[Any], seeds: list[int], evader: Any,
                                 k: int, steps: int = 4, shuffle_seed: int | None = None,
                                 encoder: Any = None, desc: str = "") -> list[Any]:
    """Selection examples with an emergency in force: for each kind and parameter seed, the
    kind's reference function joins the base (untrusted, exactly as a written one would),
    the expert plays one seeded game with the new stage in its pipeline, and every stage
    of its first ``steps`` steps gives an example. The prompt then carries the new rule
    and the new stage, so the student learns to pick the function of the stage it is
    asked for, also when the state summary looks like the one before ``decide``.
    ``desc``: a progress bar over the games."""
    from tqdm.auto import tqdm
    from ldengine.agents import AgentContext, expert_agent
    from ldengine.functionbase import FunctionBase
    from ldengine.ld import RetrieverProvider, selection_examples
    from ldengine.retriever import Encoder, Retriever
    encoder = encoder or Encoder()
    examples = []
    games = [(kind, seed) for kind in kinds for seed in seeds]
    for kind, seed in tqdm(games, desc=desc, unit="game", disable=not desc, leave=False):
        params = kind.params(seed, getattr(task, "size", 21))
        in_force = task.with_emergency(Instance(kind, params))
        base = FunctionBase.build(task.name, registry.modules_for(task.name))
        base.add_generated(reference_module(kind, params),
                           f"{task.name}/emergencies/reference-{kind.name}-{params_key(params)}.py")
        agent = expert_agent(AgentContext(in_force, base))
        agent.pipeline = with_stage(agent.pipeline, kind.stage, kind.after)
        pairs: list = []
        agent.observers.append(lambda d: pairs.append([(s.stage, s.state) for s in d.stages]))
        try:
            in_force.play(agent, 0, seed, evader, lambda r: None)
            provider = RetrieverProvider(in_force, base, Retriever.for_library(base, registry, encoder), k)
            flat = [pair for step in pairs[:steps] for pair in step]
            examples += selection_examples(in_force, base, provider, flat,
                                           None if shuffle_seed is None else shuffle_seed + len(examples))
        finally:
            if base.isolated is not None:
                base.isolated.close()
    return examples
