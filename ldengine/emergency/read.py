"""A new rule read into the task's rule language, compiled into its function.

``ldengine emergency TEXT --read``: the student reads the words into programs
(``ldengine.rulelang``); the reading the user's examples agree with is compiled by the
language (the teacher-style function written from the program's condition, and the
referee's rule from the same program), verified in the isolated worker like every
function, and stored with its program and the program's canonical English.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

from ldengine.adapters import find_adapter
from ldengine.contracts import EmergencyKind, RuleLanguage
from ldengine.emergency.verify import GameInputs, verify
from ldengine.emergency.write import Attempt, Written
from ldengine.errors import LDEngineError
from ldengine.retriever import Encoder
from ldengine.rulelang import Namer, Reading, read
from ldengine.sandbox import IsolatedSandbox

if TYPE_CHECKING:
    from ldengine.agents import AgentContext
    from ldengine.contracts import Student


@dataclass
class Compiled:
    """The reading chosen for a rule, and the emergency kind its program compiles to."""
    reading: Reading
    kind: EmergencyKind
    text: str
    readings: list[Reading]
    student: Student | None = None

    def verified(self, seed: int = 0) -> Written:
        """The compiled function, verified in the isolated worker (every move of the board,
        the kind's cases, fresh random states); its provenance records the program."""
        name = self.kind.function_name()
        source = self.kind.reference({}, name)
        with IsolatedSandbox() as sandbox:
            check = verify(self.kind, {}, source, name, sandbox, case_seed=seed)
        written = Written(self.kind.name, {}, name, [Attempt(1, 0.0, seed, source, check)])
        if check.passed:
            written.source = source
        written.provenance = {
            "kind": self.kind.name, "task": self.kind.task, "params": {}, "function": name, "rule": self.text,
            "stage": self.kind.stage, "after": self.kind.after, "program": self.reading.text,
            "english": self.reading.english, "read": True,
            "reader": "student" if self.student is not None else "lexicon", **_reader_record(self.student, self.readings),
            "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
            "accepted_attempt": 1 if check.passed else None, "version": "1.0.0"}
        return written


def _reader_record(student: Student | None, readings: list[Reading]) -> dict:
    """The provenance of a reading: every reading found, and the model and adapter that read them."""
    return {"readings": [{"program": r.text, "votes": r.votes, "refusal": r.refusal} for r in readings],
            "model": getattr(student, "name", None), "model_sha256": getattr(student, "model_hash", None),
            "adapter_hash": getattr(student, "adapter_hash", None)}


def agrees(kind: EmergencyKind, allowed: Sequence, forbidden: Sequence) -> bool:
    """Does the rule allow every ``allowed`` move and forbid every ``forbidden`` one
    (``(src, dst)`` pairs of the piece the rule binds first, its ``pieces[0]``)?"""
    piece = (getattr(kind, "pieces", None) or ("",))[0]
    return (all(kind.allows({}, piece, src, dst) for src, dst in allowed)
            and not any(kind.allows({}, piece, src, dst) for src, dst in forbidden))


def compile_reading(language: RuleLanguage, readings: list[Reading], text: str, allowed: Sequence = (),
                    forbidden: Sequence = (), unanimous: bool = False,
                    student: Student | None = None) -> tuple[Compiled | None, str]:
    """The reading to put in force (None and why not): the best usable one the examples agree
    with. ``unanimous`` (``--yes``): only when it is the only reading left, with nothing
    refused beside it unless examples ruled the others out."""
    if not readings:
        return None, "no reading: no way of splitting the words gave clauses the student reads as primitives"
    usable = [r for r in readings if r.refusal is None]
    if not usable:
        return None, "every reading is refused: " + "; ".join(f"{r.text}: {r.refusal}" for r in readings)
    kinds = {id(r): language.kind(r.program, text) for r in usable}
    fitting = [r for r in usable if agrees(kinds[id(r)], list(allowed), list(forbidden))]
    if not fitting:
        return None, (f"no reading agrees with your --allow/--forbid examples (the best: {usable[0].text}, "
                      f"{usable[0].english})")
    if unanimous and (len(fitting) > 1 or (len(readings) > 1 and not (allowed or forbidden))):
        return None, ("the readings disagree on what is forbidden, so --yes stores none: "
                      + " | ".join(f"{r.text} ({r.votes} answers)" for r in readings)
                      + "; say the rule more plainly, or give --allow/--forbid examples")
    chosen = fitting[0]
    if unanimous and chosen.guessed:
        return None, ("the student alone read " + ", ".join(repr(c) for c in chosen.guessed)
                      + f" (no lexicon entry or condition in symbols reads it), so --yes stores none of its reading "
                      f"{chosen.text}; confirm the reading without --yes, or say the rule more plainly")
    if unanimous and chosen.unread:
        return None, (f"the words {', '.join(repr(w) for w in chosen.unread)} are not in the rule language's lexicon, "
                      f"so --yes stores none (the reading {chosen.text} may have missed them); confirm the reading "
                      "without --yes, or say the rule more plainly")
    if unanimous and not chosen.uses_every_number:
        return None, (f"the reading {chosen.text} leaves a number of the rule unused, so --yes stores none; "
                      "say the rule more plainly, or confirm the reading without --yes")
    return Compiled(chosen, kinds[id(chosen)], text, readings, student), ""


@dataclass
class Reader:
    """What reads a rule in a game: the task's rule language, the student with the reading
    adapter, and the encoder that names primitives for words the reader does not know."""
    language: RuleLanguage
    student: Student
    namer: Namer

    @classmethod
    def load(cls, context: AgentContext) -> "Reader":
        """``context.task``'s reader: its rule language and its promoted reading adapter, loaded
        through ``context.load_student``."""
        task = context.task.name
        registered = context.registry.rule_languages.get(task) if context.registry else None
        if registered is None:
            raise LDEngineError(f"task {task!r} has no rule language to read its rules into")
        adapter = find_adapter(context.task, context.base, method="read")
        language = registered.obj
        return cls(language, context.load_student(adapter=adapter), Namer(lambda: Encoder().encode, language))


def read_function(kind: EmergencyKind, params: dict, reader: Reader, readings: int = 8, seed: int = 0,
                  game: GameInputs | None = None) -> Written:
    """The rule of ``kind`` with ``params``, known by its words (``kind.describe``), read into
    the rule language and compiled: each usable reading, best first (at most ``readings``), is
    one attempt, verified in the isolated worker against the kind's own rule exactly as a
    written function is (its cases, every move of the board, fresh states; with ``game``, the
    stage's real inputs); the first that passes is accepted. What was read is in the provenance."""
    text = kind.describe(params)
    found = read(reader.student, reader.language, text, namer=reader.namer, near=getattr(reader.student, "near", 0))
    name = kind.function_name()
    written = Written(kind.name, dict(params), name)
    accepted = None
    usable = [r for r in found if r.refusal is None and r.program is not None][:readings]
    with IsolatedSandbox() as sandbox:
        for number, reading in enumerate(usable, 1):
            start = time.perf_counter()
            source = reader.language.kind(reading.program, text).reference({}, name)
            check = verify(kind, params, source, name, sandbox, case_seed=seed, game=game)
            written.attempts.append(Attempt(number, 0.0, seed, source, check,
                                            seconds=round(time.perf_counter() - start, 3)))
            if check.passed:
                written.source, accepted = source, reading
                break
    written.provenance = {
        "kind": kind.name, "task": kind.task, "params": dict(params), "function": name, "rule": text,
        "stage": kind.stage, "after": kind.after, "read": True,
        "program": accepted.text if accepted else None, "english": accepted.english if accepted else None,
        **_reader_record(reader.student, found),
        "attempts": [{"number": a.number, "program": r.text, "passed": a.check.passed, "check": asdict(a.check),
                      "seconds": a.seconds, "source_sha256": hashlib.sha256(a.source.encode()).hexdigest()}
                     for a, r in zip(written.attempts, usable)],
        "accepted_attempt": written.attempts_to_pass, "version": "1.0.0"}
    return written


def refusal_line(why: str, language: RuleLanguage) -> str:
    return f"{why}. The rule language covers {language.covers}; it cannot say {language.lacks}."
