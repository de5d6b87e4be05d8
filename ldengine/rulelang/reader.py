"""Reading a rule's clauses with the student (or the lexicon, or the symbols alone),
composing each parse's programs, ranking the readings by denotation; the reader's
training pairs.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Hashable, Mapping, Protocol, Sequence, cast

from ldengine import lexicon
from ldengine.contracts import RuleLanguage
from ldengine.errors import LDEngineError
from ldengine.notation import compares
from ldengine.rulelang.grammar import (MAX_NEW_TOKENS, GrammarMask, Program, clause_grammar, numbers_in, parse_program,
                                      primitives_in, program_text)
from ldengine.rulelang.words import Parse, _normal, _unwrap, framed, parses, regions

if TYPE_CHECKING:
    import numpy as np

    from ldengine.models.generation import GeneratingStudent

    Encode = Callable[[list[str]], np.ndarray]      # texts -> unit vectors, one row per text


READER_PREFIX = "Read the clause into one primitive of the rule language, or none.\n"
BARE_PENALTY = 2.0      # log-probability taken from a parse per compound operand not in parentheses
UNUSED_PENALTY = 2.0    # ... and per number a clause states that its reading does not use
MARGIN = 3.0            # readings scoring within this of the best are shown beside it (and stop --yes)


class ClauseReader(Protocol):
    """What reads clauses in ``read`` instead of the student (``read_clauses``)."""
    def __call__(self, student: object, language: RuleLanguage, clauses: Sequence[str],
                 only: Mapping[str, tuple] | None = None) -> dict[str, tuple[Program | None, float]]: ...


def reader_prefix(language: RuleLanguage) -> str:
    return READER_PREFIX + language.manual() + "\n"


def reader_prompt(clause: str, near: Sequence[tuple[str, Program]] = ()) -> str:
    """The clause to read; ``near``: taught wordings nearest to it with their programs, shown
    first (a reader trained with them compares the clause with them instead of recalling)."""
    shown = "".join(f"{words} -> {program_text(program)}\n" for words, program in near)
    return (f"Near:\n{shown}" if shown else "") + f"Clause: {clause.strip()}\nProgram:"


def template_key(words: str) -> str:
    """The wording with its numbers blanked: two clauses of one template share it."""
    return re.sub(r"-?\d+", "#", _normal(words).lower())


def read_clauses(student: GeneratingStudent, language: RuleLanguage, clauses: Sequence[str],
                 only: Mapping[str, tuple] | None = None, namer: Namer | None = None,
                 near: int = 0) -> dict[str, tuple[Program | None, float]]:
    """Each clause's reading: (its primitive, the answer's log-probability), greedy under the
    clause's grammar (its own numbers). A clause the student answers ``none`` is read again
    without that answer, and scored by its reading's probability given that it is one clause
    times the probability that it is one (1 - P(none)): a fragment costs its parse about
    log(1 - P(none)), and words the student does not know still get their likeliest primitive.
    ``only``: clause -> the primitives its symbols denote (``language.notation``): its reading
    is one of them (the student still judges whether the words are one clause). ``namer``
    (a ``Namer``): a clause answered ``none`` is read again only into the primitives whose
    taught words are nearest to its own (words the student does not know). ``near``: a reader
    trained with neighbours (its manifest's ``near``) sees that many taught wordings nearest to
    each clause (``namer.near``) before it, as it was taught."""
    clauses = list(dict.fromkeys(clauses))
    only = {c: tuple(only[c]) for c in clauses if only and only.get(c)}
    shown = namer.near(clauses, near) if near and namer is not None and clauses else {}
    first = _greedy_readings(student, language, clauses, none=True, only=only, near=shown)
    nones = [c for c in clauses if first[c][0] == "none"]
    again = _greedy_readings(student, language, nones, none=False, only=only,
                             names=namer(nones) if namer is not None and nones else None, near=shown)
    out: dict[str, tuple[Program | None, float]] = {}
    for clause in clauses:
        answer, score = first[clause]
        if answer == "none":
            answer, forced = again[clause]
            score = forced + math.log(max(1e-12, -math.expm1(score)))
        try:
            out[clause] = (parse_program(answer), score)
        except LDEngineError:
            out[clause] = (None, float("-inf"))       # cut off at the token limit
    return out


def _greedy_readings(student: GeneratingStudent, language: RuleLanguage, clauses: list[str], none: bool,
                     only: Mapping[str, tuple] | None = None, names: Mapping[str, Sequence[str]] | None = None,
                     near: Mapping[str, Sequence[tuple[str, Program]]] | None = None) -> dict[str, tuple[str, float]]:
    if not clauses:
        return {}
    masks = [GrammarMask(student.tokenizer, clause_grammar(language, numbers_in(c), none, (only or {}).get(c),
                                                           (names or {}).get(c)))
             for c in clauses]
    scores: list[float] = []
    answers = student.generate_batch([reader_prompt(c, (near or {}).get(c, ())) for c in clauses],
                                     prefix=reader_prefix(language),
                                     max_new_tokens=MAX_NEW_TOKENS, allowed=masks, scores=scores)
    return {c: (a.strip(), s) for c, a, s in zip(clauses, answers, scores)}


def compose(parse: Parse, read: dict[str, tuple[Program | None, float]]) -> tuple[Program | None, float]:
    """The parse's program from its clauses' readings, and its score (the sum of the clauses'
    log-probabilities, less ``UNUSED_PENALTY`` per number a clause states and its reading does
    not use); None when a clause's reading was cut off."""
    if parse.op is None:
        program, score = read[parse.words]
        if program is None:
            return None, score
        unused = set(numbers_in(parse.words)) - _numbers_of(program)
        return program, score - UNUSED_PENALTY * len(unused)
    parts = [compose(p, read) for p in parse.parts]
    if any(program is None for program, _ in parts):
        return None, float("-inf")
    return (parse.op, *(program for program, _ in parts)), sum(score for _, score in parts)


def _numbers_of(program: Program) -> set[int]:
    return {n for a in program[1:] for n in (_numbers_of(a) if isinstance(a, tuple) else (a,))}


def _negated(program: Program) -> Program:
    return program[1] if program[0] == "Not" else ("Not", program)


@dataclass
class Reading:
    """One denotation the best parses agree on: its best program, how many parses gave it,
    its best score, its canonical English, and why it is refused (None: usable)."""
    program: Program
    votes: int
    english: str
    refusal: str | None
    uses_every_number: bool
    programs: list[Program] = field(default_factory=list)
    score: float = 0.0
    unread: tuple[str, ...] = ()      # words of the rule the lexicon does not read (``lexicon.unread``)
    guessed: tuple[str, ...] = ()     # clauses the student read that neither the lexicon nor the symbols read

    @property
    def text(self) -> str:
        return program_text(self.program)


def read(student: object, language: RuleLanguage, text: str, margin: float = MARGIN,
         clause_reader: ClauseReader | None = None, notation: bool = True, namer: Namer | None = None,
         near: int = 0, lexical: bool = True) -> list[Reading]:
    """The student's readings of ``text``, best first (tag, then compose): the language's
    frames and connectives split the words every way they can; each candidate clause whose
    symbols denote primitives exactly (``language.notation``, with ``notation``) is one of
    them; the student reads each other clause into one primitive (or ``none``) under a grammar
    of that clause's numbers; each parse composes its clauses' programs, scored by their
    log-probabilities; parses are grouped by denotation, and those within ``margin`` of the
    best are kept. ``clause_reader`` (default ``read_clauses``) replaces the student's reading
    of clauses (a baseline without a model, ``benchmarks/bench_read_rules.py``); ``namer``: see
    ``read_clauses``, as is ``near`` (the reading adapter's manifest says how many)."""
    found = framed(language, text)
    trees = [(forbids, p) for forbids, words, _, _ in found for p in parses(language, words)]
    subject = found[0][2]
    clauses = list(dict.fromkeys([c for _, p in trees for c in p.clauses()] + ([subject] if subject else [])))
    only = symbolic(language, clauses) if notation else {}
    if lexical:
        for clause, programs in lexicon.readings(language, clauses).items():
            # a clause in symbols is read by the lexicon only where its words change them (a border)
            only[clause] = programs if compares(clause) else tuple(dict.fromkeys((*only.get(clause, ()), *programs)))
    if clause_reader is None:
        # the in-process student reads: its grammars need its tokenizer
        read_ = read_clauses(cast("GeneratingStudent", student), language, clauses, only=only, namer=namer,
                             near=near)
    else:
        read_ = clause_reader(student, language, clauses, only=only)
    if lexical:                 # "it is false that ...": words joining clauses are no primitive's
        read_.update({c: (None, float("-inf")) for c in lexicon.unreadable(language, clauses)})
    scored = []
    guessed: dict[Program, set[str]] = {}        # program -> the clauses of its parses only the student read
    for forbids, parse in trees:
        program, score = compose(parse, read_)
        if program is not None and not forbids:
            program = _negated(program)
        if program is not None and subject:            # the moves the rule holds for
            program, score = (("And", read_[subject][0], program), score + read_[subject][1]) \
                if read_[subject][0] is not None else (None, score)
        if program is not None:
            scored.append((score - BARE_PENALTY * parse.bare, program))
            alone = {c for c in parse.clauses() + ([subject] if subject else []) if not only.get(c)}
            guessed[program] = alone if program not in guessed else min(guessed[program], alone, key=len)
    scored.sort(key=lambda item: -item[0])
    best = scored[0][0] if scored else 0.0
    finest = max((p for _, p in trees), key=lambda p: len(p.clauses()), default=None)
    unread = lexicon.unread(language, text, [found[0][1], subject, found[0][3]],
                            (finest.clauses() if finest else []) + [subject],
                            [c for c in clauses if c in only and compares(c)]) if found else ()
    readings = rank(language, text, [(s, p) for s, p in scored if s >= best - margin], unread)
    if lexical and language.lexicon is not None:
        for reading in readings:
            sets: list[set[str]] = [guessed.get(p, set()) for p in reading.programs]
            reading.guessed = tuple(sorted(sorted(sets, key=len)[0])) if sets else ()
    return readings


def read_without_model(language: RuleLanguage, text: str) -> list[Reading] | None:
    """The reading of ``text`` when the student is not needed, else None: every candidate
    clause of every parse is read by exactly one program of the lexicon or the symbols, and
    all the parses forbid the same moves. The student's readings of such a text are that
    reading (its log-probabilities only rank parses whose clauses are already fixed, and they
    all agree), so ``ldengine emergency --read`` and ``rules read`` do not load it."""
    needs: list[str] = []

    def unique(student: object, language: RuleLanguage, clauses: Sequence[str],
               only: Mapping[str, tuple] | None = None) -> dict[str, tuple[Program | None, float]]:
        out: dict[str, tuple[Program | None, float]] = {}
        for clause in dict.fromkeys(clauses):
            programs = tuple((only or {}).get(clause) or ())
            if len(programs) != 1:
                needs.append(clause)
            out[clause] = (programs[0], 0.0) if len(programs) == 1 else (None, float("-inf"))
        return out

    readings = read(None, language, text, margin=float("inf"), clause_reader=unique)
    return readings if not needs and len(readings) == 1 else None


NAMES_K = 3             # primitives a Namer offers for a clause of unknown words


class Namer:
    """For a clause of words the student does not know: the ``k`` primitives whose taught
    wordings (``language.words`` of ``language.clause_examples``) a sentence encoder puts
    nearest to it. ``encoder``: called once, when first needed, it returns the encoding
    function (texts -> unit vectors, e.g. the retriever's ``Encoder().encode``)."""

    def __init__(self, encoder: Callable[[], Encode], language: RuleLanguage, k: int = NAMES_K,
                 examples: int = 400):
        self.encoder, self.language, self.k, self.examples = encoder, language, k, examples
        self.encode: Encode | None = None

    def _taught(self) -> None:
        taught: dict[str, Program] = {}
        for _, program in self.language.clause_examples(self.examples, seed=0):
            for words in self.language.words(program):
                taught.setdefault(_normal(words), program)
        self.encode = self.encoder()
        self.taught = list(taught.items())
        self.names = [program[0] for program in taught.values()]
        self.keys = [template_key(words) for words in taught]
        self.vectors = self.encode(list(taught))

    def _similarities(self, clauses: Sequence[str]) -> np.ndarray:
        """Each clause's cosine similarity to every taught wording (the encoder loads when first asked)."""
        if self.encode is None:
            self._taught()
        return cast("Encode", self.encode)(list(clauses)) @ self.vectors.T      # set by ``_taught``

    def near(self, clauses: Sequence[str], n: int,
             exclude: Mapping[str, str] | None = None) -> dict[str, list[tuple[str, Program]]]:
        """Per clause, the ``n`` taught wordings nearest to it with their programs, one per
        primitive (so the nearest of several primitives are shown side by side), nearest last
        (next to the clause); ``exclude``: clause -> a template whose wordings are left out
        (in training, the clause's own: the reader learns to compare with other words)."""
        out = {}
        for clause, row in zip(clauses, self._similarities(clauses)):
            skip = (exclude or {}).get(clause)
            picked: dict[str, int] = {}
            for i in row.argsort()[::-1]:
                name = self.names[i]
                if name not in picked and self.keys[i] != skip:
                    picked[name] = int(i)
                    if len(picked) == n:
                        break
            out[clause] = [self.taught[i] for i in reversed(picked.values())]
        return out

    def __call__(self, clauses: Sequence[str]) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for clause, row in zip(clauses, self._similarities(clauses).tolist()):
            best: dict[str, float] = {}
            for name, sim in zip(self.names, row):
                best[name] = max(best.get(name, -1.0), sim)
            out[clause] = tuple(sorted(best, key=lambda n: -best[n])[:self.k])
        return out


def symbolic(language: RuleLanguage, clauses: Sequence[str]) -> dict[str, tuple]:
    """Clause -> the primitives its symbols denote exactly (``language.notation``), for the
    clauses whose words add nothing to the symbols: one that the connectives can split only
    into parts that each write a comparison too ("11 <= x <= 15 and 11 <= y <= 15"); not one
    with a negation ("it is not the case that x > 3") or a part in words ("both x + y is even
    and y % 2 == 0"), whose parses read the parts."""
    out = {}
    for clause in clauses:
        found = tuple(language.notation(clause))
        if found and all(p.op != "Not" and all(compares(w) for w in p.clauses())
                         for p in parses(language, clause) if p.op is not None):
            out[clause] = found
    return out


def rank(language: RuleLanguage, text: str, scored: list[tuple[float, Program]],
         unread: tuple[str, ...] = ()) -> list[Reading]:
    """Group (score, program) pairs by denotation, best first: usable before refused, then by
    the best score of each group; ``unread``: the words no reading accounts for."""
    numbers = set(numbers_in(text))
    groups: dict[Hashable, list[tuple[float, Program]]] = {}
    for score, program in scored:
        try:
            key = language.denotation(program)
        except LDEngineError:
            continue
        if key is None:
            key = ("idle", program_text(program))
        groups.setdefault(key, []).append((score, program))
    readings = []
    for members in groups.values():
        score, program = max(members, key=lambda m: m[0])
        english = language.english(program)
        # a number is used when the reading takes it or its own words state it (a wall between
        # columns 13 and 14 takes 13; its English names 14)
        used = {a for prim in primitives_in(program, language) for a in prim[1:]} | set(numbers_in(english))
        readings.append(Reading(program, len(members), english, language.refusal(program),
                                numbers <= used, [p for _, p in members], score, unread))
    return sorted(readings, key=lambda r: (r.refusal is not None, -r.score))


def own_clauses(language: RuleLanguage, program: Program,
                words: Callable[[Program], Sequence[str]] | None = None) -> dict[str, Program]:
    """The program's primitives by the words of each (``words(primitive)``, default
    ``language.words``), as the splitter gives a clause: each of them is one clause."""
    words = words or language.words
    return {_unwrap(_normal(w))[0]: prim for prim in primitives_in(program, language) for w in words(prim)}


def clause_training(language: RuleLanguage, pairs: list[tuple[str, Program]], negatives: float = 1.0,
                    seed: int = 0, namer: Namer | None = None, near: int = 0) -> list[tuple[str, str, str]]:
    """(prefix, prompt, answer) examples for ``Student.train_lora_text``: every candidate
    clause the splitter makes of each rule's words, answered with its primitive when the words
    are exactly one primitive's (``language.words``), else ``none`` (about ``negatives`` of
    those per clause). ``near`` (with ``namer``): each clause shown after the taught wordings
    nearest to it (``Namer.near``), those of its own template left out."""
    rng = random.Random(f"clause-training:{seed}")
    prefix = reader_prefix(language)
    positives: list[tuple[str, Program]] = []      # every occurrence: common clauses are seen often
    others: dict[str, None] = {}
    for text, program in pairs:
        own = own_clauses(language, program)
        clauses = {c for _, words in regions(language, text) for parse in parses(language, words)
                   for c in parse.clauses()}
        for clause in sorted(clauses):
            if clause in own:
                positives.append((clause, own[clause]))
            else:
                others[clause] = None
    negatives_kept = rng.sample(sorted(others), min(len(others), int(len(positives) * negatives)))
    shown: dict[str, list[tuple[str, Program]]] = {}
    if near and namer is not None:
        asked = list(dict.fromkeys([c for c, _ in positives] + negatives_kept))
        shown = namer.near(asked, near, exclude={c: template_key(c) for c in asked})
    data = [(prefix, reader_prompt(c, shown.get(c, ())), " " + program_text(p)) for c, p in positives]
    data += [(prefix, reader_prompt(c, shown.get(c, ())), " none") for c in negatives_kept]
    rng.shuffle(data)
    return data
