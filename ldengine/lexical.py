"""A no-model ablation for choosing among a stage's alternatives: match words.

The ``lexical`` agent takes, at a stage with alternatives, the alternative whose
``When:`` text holds by word overlap with the stated facts: each clause of the
``When:`` (split at "and") is matched to the fact whose sentence shares the most
content words with it; the clause holds when that fact is stated yes (the variant
with ``negation`` also flips it where one of the two carries a negation word). Among the alternatives whose every
clause holds, the best-matching wins; when none holds, the stage's function without
a ``When:`` (its default). At a stage with one function it takes the candidate of
that stage. It is what the student must beat: a selector that reads nothing but
shared words.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ldengine.manual import ManualEntry

if TYPE_CHECKING:
    from ldengine.functionbase import FunctionBase

STOP = frozenset("a an the of to in on at is are be by for from it its this that with and or as can any some "
                 "each every all one than then there their which who whose has have had do does".split())
NEGATIONS = frozenset("not no never none nothing nobody without unless fewer less outside off isn't doesn't "
                      "cannot dry dark shut".split())


def words(text: str) -> set[str]:
    """Content words of ``text``, lower-cased, numbers kept."""
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in STOP}


def overlap(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def clause_holds(clause: str, facts: list[tuple[str, bool]], negation: bool = False) -> tuple[bool, float]:
    """Whether ``clause`` holds by its best-matching fact (it holds when that fact is stated yes), and that
    match's overlap. With ``negation``, a clause or fact with a negation word (and not both) flips it."""
    mine = words(clause)
    if not facts or not mine:
        return False, 0.0
    drop = NEGATIONS if negation else frozenset()
    score, sentence, value = max((overlap(mine - drop, words(s) - drop), s, v) for s, v in facts)
    flipped = negation and bool(mine & NEGATIONS) != bool(words(sentence) & NEGATIONS)
    return (value != flipped) and score > 0, score


def lexical_choice(stage: str, candidates: list[tuple[str, str]], facts: list[tuple[str, bool]],
                   negation: bool = False) -> int:
    """The index of the candidate (its stage and When: text) the word matcher takes (module docstring)."""
    own = [i for i, (where, _) in enumerate(candidates) if where == stage]
    if not own:
        return 0
    if len(own) == 1:
        return own[0]
    best, best_score = None, -1.0
    for i in own:
        when = candidates[i][1]
        if not when:
            continue
        checks = [clause_holds(part, facts, negation) for part in re.split(r"\band\b", when) if part.strip()]
        if checks and all(ok for ok, _ in checks):
            score = sum(s for _, s in checks) / len(checks)
            if score > best_score:
                best, best_score = i, score
    if best is not None:
        return best
    return next((i for i in own if not candidates[i][1]), own[0])


OPTION = re.compile(r"^\S+ \(stage ([^)]+)\): .*?(?: Use when: (.*))?$", re.S)


def parse_selection(query: str, options: list[str]) -> tuple[str, list[tuple[str, str]], list[tuple[str, bool]]]:
    """A selection as the student reads it: the query's stage, each option's "(stage S)" and
    "Use when:" text, and the query's "sentence: yes|no" parts as facts."""
    stage = query.split("\n", 1)[0].removeprefix("Stage: ").strip()
    state = query.split("State: ", 1)[-1].strip()
    facts = [(part.rsplit(":", 1)[0], part.endswith(": yes")) for part in state.split("; ")
             if part.endswith((": yes", ": no"))]
    parsed = [OPTION.match(o) for o in options]
    return stage, [(m.group(1), m.group(2) or "") if m else ("", "") for m in parsed], facts


def text_choice(query: str, options: list[str], negation: bool = False) -> int:
    """``lexical_choice`` on a selection as the student reads it (``parse_selection``)."""
    stage, candidates, facts = parse_selection(query, options)
    return lexical_choice(stage, candidates, facts, negation)


class LexicalSelector:
    """``lexical_choice`` over the facts the base states for the stage."""

    def __init__(self, base: FunctionBase):
        self.base = base

    def select(self, stage: str, state: object, candidates: list[ManualEntry]) -> int:
        facts = [(f.sentence, v) for f, v in self.base.fact_values(stage, state)]
        return lexical_choice(stage, [(c.stage, c.when) for c in candidates], facts)
