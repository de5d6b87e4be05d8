"""Writing a function for a new rule (Eq. 6): the prompt of worked examples and the
new function's def line, the student's attempts (greedy, then sampled), each verified."""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence, cast

from ldengine.contracts import CustomRule, EmergencyKind, Student
from ldengine.emergency.verify import Check, GameInputs, verify
from ldengine.errors import LDEngineError
from ldengine.sandbox import IsolatedSandbox

if TYPE_CHECKING:
    from ldengine.emergency.board import BoardMap
    from ldengine.registry import Registry
    from ldengine.sandbox.isolated import IsolatedSandbox as IsolatedWorker

DEFAULT_ATTEMPTS = 8
# Attempts after the first (greedy) one are sampled. Hot on purpose: when the greedy body
# miscopies the rule (e.g. the wall's "py" written as "x"), samples at 0.8 made the same
# slip (wall: 7/10 seeds within 8 attempts); at 1.2 every held-out seed passed within 8.
TEMPERATURE = 1.2
MAX_NEW_TOKENS = 160
# What the student writes: "body", the whole function body after the engine's def line and
# docstring; "condition", only the allowed-move condition, one line inside the body the kind's
# ``scaffold()`` gives (the comprehension, the same for every rule, is the engine's). A write
# adapter's manifest says which form it learnt (``writing_form``); older ones wrote bodies.
FORMS = ("body", "condition")


class ConditionForm(Protocol):
    """An emergency kind that has the condition form: its optional ``scaffold()`` (what the engine
    writes around the condition) and its ``reference`` function in either form."""

    def scaffold(self) -> tuple[str, str]: ...

    def reference(self, params: dict, name: str | None = None, form: str = "body") -> str: ...


@dataclass
class Attempt:
    number: int
    temperature: float
    seed: int
    source: str
    check: Check
    seconds: float = 0.0               # writing (a batch's time shared by its attempts) and checking
    refused: str | None = None         # why a passing one was not accepted (``accept``'s answer)


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


def worked_examples(registry: Registry, task: str, seed: int = 0, form: str = "body") -> list[str]:
    """The manual's emergency functions shown in the writing prompt: the teacher's reference
    functions of some training kinds (never of an evaluated kind), written in ``form``."""
    train = [r.obj for r in registry.emergencies.values() if r.obj.task == task and r.obj.split == "train"]
    chosen = [k for k in train if getattr(k, "example", False)] or train[:3]
    if form == "body":
        return [k.reference(k.params(seed)) for k in chosen]
    return [k.reference(k.params(seed), form=form) for k in chosen]


def scaffold_of(kind: EmergencyKind, form: str) -> tuple[str, str]:
    """What the engine writes before and after the student's text, below the header: nothing
    in the body form; the kind's ``scaffold()`` in the condition form."""
    if form not in FORMS:
        raise LDEngineError(f"unknown writing form {form!r} (known: {', '.join(FORMS)})")
    if form == "body":
        return "", ""
    if not callable(getattr(kind, "scaffold", None)):
        raise LDEngineError(f"the emergency kind {kind.name!r} has no condition form (no scaffold method); "
                            "write its whole body with a body-form adapter")
    return cast(ConditionForm, kind).scaffold()


def training_pair(kind: EmergencyKind, params: dict, form: str = "body") -> tuple[str, str]:
    """(what the prompt ends with, what the student should write) for one rule: the header and
    the reference body; or the header and scaffold's start, and the condition with its newline."""
    before, after = scaffold_of(kind, form)
    head = kind.header(params) + before
    if form == "body":
        return head, kind.reference(params)[len(head):]
    full = cast(ConditionForm, kind).reference(params, form=form)     # scaffold_of found its scaffold
    return head, full[len(head):len(full) - len(after)] + "\n"


def written_part(text: str, form: str) -> str:
    """The part of a completion that the engine keeps: the body (``body_of``), or the
    condition's line."""
    return body_of(text) if form == "body" else text.split("\n", 1)[0].rstrip()


def line_done(text: str) -> bool:
    """A stop test for the condition form: its one line is complete."""
    return "\n" in text


# The writing prompt's first lines when the kind words none of its own (its optional
# ``preamble``, e.g. what a task's emergency functions narrow, in the task's words).
PREAMBLE = "# Functions for new rules. Each narrows its input to what the new rule allows.\n\n"


def preamble_of(kind: EmergencyKind) -> str:
    """The kind's ``preamble`` if it has one, else ``PREAMBLE``."""
    return getattr(kind, "preamble", None) or PREAMBLE


def examples_prefix(examples: list[str], preamble: str = PREAMBLE) -> str:
    """The part of the writing prompt every emergency of a task shares: its preamble and the
    manual's worked emergency functions (its keys and values are computed once per student and kept)."""
    return preamble + "".join(e.rstrip() + "\n\n\n" for e in examples)


def writing_prompt(examples: list[str], header: str, preamble: str = PREAMBLE) -> str:
    """The whole prompt: the worked examples, then the new function's def line and manual
    entry; the student continues with its body."""
    return examples_prefix(examples, preamble) + header


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


def write_function(kind: EmergencyKind, params: dict, student: Student, examples: list[str],
                   attempts: int = DEFAULT_ATTEMPTS, seed: int = 0, cases: list | None = None,
                   name: str | None = None, report: Callable[[Attempt], None] = lambda a: None,
                   verify_seed: int | None = None, game: GameInputs | None = None,
                   accept: Callable[[Attempt, IsolatedWorker], str | None] | None = None, form: str = "body",
                   temperature: float = TEMPERATURE) -> Written:
    """Up to ``attempts`` candidates (greedy first, then sampled), each verified in an
    isolated sandbox worker (replaced whenever a candidate kills it) on the cases and on
    inputs drawn with ``verify_seed`` (None: a fresh seed, recorded in each attempt's
    check), game-shaped with ``game``; the first that passes is accepted, unless
    ``accept(attempt, sandbox)`` (e.g. the user, shown its board map) gives a reason to
    refuse it: that reason is recorded and the next attempt is written. ``form``: the whole
    body, or the condition only (``FORMS``); ``examples`` should be written in it too.
    ``temperature``: of the sampled attempts (the first is greedy)."""
    name = name or kind.function_name()
    before, after = scaffold_of(kind, form)
    header = kind.header(params, name) + before
    prefix = examples_prefix(examples, preamble_of(kind))
    prompt = writing_prompt(examples, header, preamble_of(kind))
    cases = cases if cases is not None else kind.cases(params, seed)
    verify_seed = random.SystemRandom().randrange(2**31) if verify_seed is None else verify_seed
    written = Written(kind.name, dict(params), name)
    with IsolatedSandbox() as sandbox:
        stop = body_done if form == "body" else line_done
        for number, heat, sample_seed, text, spent in _completions(student, prefix, header, attempts, seed, stop,
                                                                   temperature):
            start = time.perf_counter()
            part = written_part(text, form)
            source = header + part + after
            check = (verify(kind, params, source, name, sandbox, cases, verify_seed, game=game) if part.strip()
                     else Check(False, [f"the student wrote no {'function body' if form == 'body' else 'condition'}"],
                                len(cases), 0))
            attempt = Attempt(number, heat, sample_seed, source, check,
                              round(spent + time.perf_counter() - start, 2))
            written.attempts.append(attempt)
            report(attempt)
            if attempt.check.passed and accept is not None:
                attempt.refused = accept(attempt, sandbox)
            if attempt.check.passed and attempt.refused is None:
                written.source = source
                break
    written.provenance = {**_provenance(kind, written, student, prompt, cases), "form": form}
    return written


def _completions(student: Student, prefix: str, header: str, attempts: int, seed: int,
                 stop: Callable[[str], bool], temperature: float) -> Iterator[tuple[int, float, int, str, float]]:
    """(number, temperature, seed, text, seconds): one greedy answer, then sampled ones, four
    at a time (each of a batch is given an equal share of the batch's time)."""
    if attempts < 1:
        return

    def write(n: int, temperature: float, sample_seed: int) -> tuple[list[str], float]:
        start = time.perf_counter()
        texts = student.generate_batch([header] * n, prefix=prefix, max_new_tokens=MAX_NEW_TOKENS,
                                       stop=stop, chat=False, temperature=temperature, seed=sample_seed)
        return texts, (time.perf_counter() - start) / n
    texts, spent = write(1, 0.0, seed)
    yield 1, 0.0, seed, texts[0], spent
    number = 1
    while number < attempts:
        n = min(4, attempts - number)
        texts, spent = write(n, temperature, seed + number)
        for text in texts:
            number += 1
            yield number, temperature, seed + number - 1, text, spent


def _provenance(kind: EmergencyKind, written: Written, student: Student, prompt: str, cases: list) -> dict:
    return {"kind": kind.name, "task": kind.task, "params": written.params, "function": written.name,
            "rule": kind.describe(written.params), "stage": kind.stage, "after": kind.after,
            "model": getattr(student, "name", None), "model_sha256": getattr(student, "model_hash", None),
            "adapter_hash": getattr(student, "adapter_hash", None),
            "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
            "cases_sha256": hashlib.sha256(json.dumps(cases, sort_keys=True, default=repr).encode()).hexdigest(),
            "attempts": [{"number": a.number, "temperature": a.temperature, "seed": a.seed,
                          "passed": a.check.passed, "check": asdict(a.check), "seconds": a.seconds,
                          **({"refused": a.refused} if a.refused else {}),
                          "source_sha256": hashlib.sha256(a.source.encode()).hexdigest()}
                         for a in written.attempts],
            "accepted_attempt": written.attempts_to_pass, "version": "1.0.0",
            **({"custom_rule": _custom_rule(cast(CustomRule, kind))} if hasattr(kind, "allowed") else {})}


def _custom_rule(kind: CustomRule) -> dict:      # a user's rule: its words and examples too
    """What rebuilds a rule nobody registered (a user's words and examples), so that
    ``ldengine generated verify`` can check its function again."""
    def moves(items: Sequence[tuple]) -> list:
        return [[list(src), list(dst)] for src, dst in items]
    return {"text": kind.text, "allowed": moves(kind.allowed), "forbidden": moves(kind.forbidden),
            "like": getattr(kind.like, "name", None)}


# A confirmed rule keeps this many of the moves the function allows as allowed examples, so
# that a later verification also catches a function that forbids more than the user saw.
ALLOWED_SAMPLE = 64


def confirm(written: Written, kind: CustomRule, params: dict, board: BoardMap, seed: int = 0,
            by: str = "the user, on the function's board map") -> Check:
    """A user's rule once its function's board map was confirmed (``board``: ``BoardMap``):
    the rule is restated with the moves the function forbids as its forbidden examples (and
    a sample of those it allows), so the referee and ``ldengine generated verify`` judge every
    move the user saw; a rule known by its words alone gets its worked example from them in
    the function's manual entry. The function is verified again against the restated rule
    in a fresh isolated worker; ``written`` takes the result (source, check, provenance);
    ``by`` says who accepted the map (the user, or ``--yes`` without asking)."""
    forbidden = set(board.forbidden_moves)
    allowed = sorted(set(board.all_moves) - forbidden)
    allowed = random.Random(seed).sample(allowed, min(ALLOWED_SAMPLE, len(allowed)))
    restated = kind.confirmed(sorted(forbidden), allowed)
    source = written.source or ""
    if not kind.examples_given:
        source = restated.header(params, written.name) + source[len(kind.header(params, written.name)):]
    cases = restated.cases(params, seed)
    with IsolatedSandbox() as sandbox:
        check = verify(restated, params, source, written.name, sandbox, cases, seed)
    if check.passed:
        written.source, written.check = source, check
        written.provenance.update({
            "custom_rule": _custom_rule(restated),
            "cases_sha256": hashlib.sha256(json.dumps(cases, sort_keys=True, default=repr).encode()).hexdigest(),
            "confirmed": {"by": by, "forbidden_moves": len(forbidden),
                          "moves": board.moves, "source_sha256": hashlib.sha256(source.encode()).hexdigest()}})
    return check

