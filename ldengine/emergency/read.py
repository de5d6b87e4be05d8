"""A new rule read into the task's rule language, compiled into its function.

``ldengine emergency TEXT --read``: the student reads the words into programs
(``ldengine.rulelang``); the reading the user's examples agree with is compiled by the
language (the teacher-style function written from the program's condition, and the
referee's rule from the same program), verified in the isolated worker like every
function, and stored with its program and the program's canonical English.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

from ldengine.contracts import RuleLanguage
from ldengine.emergency.verify import verify
from ldengine.emergency.write import Attempt, Written
from ldengine.rulelang import Reading
from ldengine.sandbox import IsolatedSandbox


@dataclass
class Compiled:
    """The reading chosen for a rule, and the emergency kind its program compiles to."""
    reading: Reading
    kind: Any
    text: str
    readings: list[Reading]
    student: Any = None

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
            "readings": [{"program": r.text, "votes": r.votes, "refusal": r.refusal} for r in self.readings],
            "model": getattr(self.student, "name", None), "model_sha256": getattr(self.student, "model_hash", None),
            "adapter_hash": getattr(self.student, "adapter_hash", None),
            "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
            "accepted_attempt": 1 if check.passed else None, "version": "1.0.0"}
        return written


def agrees(kind: Any, allowed: Sequence, forbidden: Sequence) -> bool:
    """Does the rule allow every ``allowed`` move and forbid every ``forbidden`` one
    (``(src, dst)`` pairs of a pursuer)?"""
    return (all(kind.allows({}, "pursuer", src, dst) for src, dst in allowed)
            and not any(kind.allows({}, "pursuer", src, dst) for src, dst in forbidden))


def compile_reading(language: RuleLanguage, readings: list[Reading], text: str, allowed: Sequence = (),
                    forbidden: Sequence = (), unanimous: bool = False,
                    student: Any = None) -> tuple[Compiled | None, str]:
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


def refusal_line(why: str, language: RuleLanguage) -> str:
    return f"{why}. The rule language covers {language.covers}; it cannot say {language.lacks}."
