"""Pursuit's rule language as programs: what a rule in words is read into.

A program names the *forbidden* region of pursuer moves from (px, py) to (x, y), in the
terms of ``rule_shapes``: a primitive with its numbers, e.g. ``column(5)`` or
``rectangle(3, 7, 10, 14)``, or a combinator over programs: ``And(a, b)``, ``Or(a, b)``,
``Except(a, b)`` (a and not b) and ``Not(a)``. Programs are nested tuples,
``("And", ("column", 5), ("Not", ("row", 7)))``; ``ldengine.rulelang`` parses and prints
them and constrains the student's output to them.

What it covers: every primitive and combinator of ``rule_shapes`` (cells, columns, rows,
diagonals, rectangles and their borders, half-planes, parity and remainders, Manhattan
distance to a cell, move directions and lengths, walls, where the pursuer starts), nested
two deep with at most three primitives. What it does not: anything about the evader or
the other pursuers (their distance, how many stand in a row), counts of moves or time,
and regions no combination of these primitives draws (e.g. a circle).
"""
from __future__ import annotations

import itertools
import random
import re
from functools import lru_cache
from typing import Any, Callable

from ldengine import notation as nt
from ldengine.errors import LDEngineError
from ldengine.rulelang import numbers_in
from ldengine_plugins.pursuit import rule_shapes as rs
from ldengine_plugins.pursuit.emergencies import PursuitEmergency
from ldengine_plugins.pursuit.lexicon import LEXICON
from ldengine_plugins.pursuit.paraphrases import PARAPHRASES

TASK = "pursuit"
COMBINATORS = {"And": "and", "Or": "or", "Except": "except", "Not": "not"}     # program name -> rule_shapes op
OPS = {op: name for name, op in COMBINATORS.items()}
FROM_TEXT = None                 # a parameter whose number the rule's text states
TAUGHT = "taught"                # the reader's training words: each primitive's and the teacher's paraphrases

# Program name -> (builder, what each parameter may be: FROM_TEXT or the only values it can take).
PRIMITIVES: dict[str, tuple[Callable[..., rs.Primitive], tuple]] = {
    "cell": (rs.cell, (FROM_TEXT, FROM_TEXT)),
    "column": (rs.column, (FROM_TEXT,)),
    "row": (rs.row, (FROM_TEXT,)),
    "diagonal": (rs.diagonal, (FROM_TEXT,)),
    "anti_diagonal": (rs.anti_diagonal, (FROM_TEXT,)),
    "rectangle": (rs.rectangle, (FROM_TEXT,) * 4),
    "border": (rs.border, (FROM_TEXT,) * 4),
    **{name: (lambda a, side=side: rs.half_plane(side, a), (FROM_TEXT,)) for side, name in rs.SIDE_NAMES.items()},
    **{name: (lambda k, r, term=term: rs.modular(term, k, r), ((2, 3), (0, 1, 2)))
       for term, name in rs.TERM_NAMES.items()},
    "distance": (rs.distance, (FROM_TEXT,) * 3),
    **{name: (lambda cond=cond: rs.direction(cond), ()) for cond, name in rs.DIRECTION_NAMES.items()},
    "length": (rs.length, ((0, 1, 2),)),
    "wall_x": (lambda line, lo, hi: rs.crossing("x", line, lo, hi), (FROM_TEXT,) * 3),
    "wall_y": (lambda line, lo, hi: rs.crossing("y", line, lo, hi), (FROM_TEXT,) * 3),
    "start": (rs.start, (FROM_TEXT,) * 4),
}

# Each primitive's program with its parameters named, and the condition on a move from (px, py)
# to (x, y) it names: the manual the student reads before a clause.
SIGNATURES = {
    "cell": "cell(a, b): x == a and y == b", "column": "column(a): x == a", "row": "row(b): y == b",
    "diagonal": "diagonal(c): x - y == c", "anti_diagonal": "anti_diagonal(c): x + y == c",
    "rectangle": "rectangle(x0, x1, y0, y1): x0 <= x <= x1 and y0 <= y <= y1",
    "border": "border(x0, x1, y0, y1): (x, y) on the edge of the rectangle x0 <= x <= x1, y0 <= y <= y1",
    "west_of": "west_of(a): x < a", "east_of": "east_of(a): x > a", "south_of": "south_of(b): y < b",
    "north_of": "north_of(b): y > b", "x_mod": "x_mod(k, r): x % k == r", "y_mod": "y_mod(k, r): y % k == r",
    "sum_mod": "sum_mod(k, r): (x + y) % k == r",
    "distance": "distance(a, b, d): abs(x - a) + abs(y - b) <= d", "goes_east": "goes_east(): x > px",
    "goes_west": "goes_west(): x < px", "goes_north": "goes_north(): y > py", "goes_south": "goes_south(): y < py",
    "keeps_column": "keeps_column(): x == px", "keeps_row": "keeps_row(): y == py",
    "length": "length(n): abs(x - px) + abs(y - py) == n",
    "wall_x": "wall_x(x, y0, y1): the move crosses between columns x and x + 1, starting or ending in rows y0 to y1",
    "wall_y": "wall_y(y, x0, x1): the move crosses between rows y and y + 1, starting or ending in columns x0 to x1",
    "start": "start(x0, x1, y0, y1): x0 <= px <= x1 and y0 <= py <= y1",
}
Program = Any       # a nested tuple: (name, *numbers) or (combinator, *programs)


class ProgramError(LDEngineError):
    """A program this language cannot build (an unknown name, a wrong number of parts, a
    number a parameter cannot take)."""


def region(program: Program) -> rs.Region:
    """The program as a ``rule_shapes`` region (primitives built from their numbers)."""
    if not isinstance(program, tuple) or not program or not isinstance(program[0], str):
        raise ProgramError(f"not a program: {program!r}")
    name, args = program[0], program[1:]
    if name in COMBINATORS:
        arity = 1 if name == "Not" else 2
        if len(args) != arity:
            raise ProgramError(f"{name} takes {arity} program(s), not {len(args)}")
        return rs.Combined(COMBINATORS[name], tuple(region(a) for a in args))
    if name not in PRIMITIVES:
        raise ProgramError(f"no primitive {name!r} (known: {', '.join(PRIMITIVES)})")
    build, params = PRIMITIVES[name]
    if len(args) != len(params) or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise ProgramError(f"{_signature(name)} takes {len(params)} whole number(s), not {args!r}")
    for a, allowed in zip(args, params):
        if allowed is not FROM_TEXT and a not in allowed:
            raise ProgramError(f"{_signature(name)}: {a} is not one of {allowed}")
    if name.endswith("_mod") and args[1] >= args[0]:
        raise ProgramError(f"{_signature(name)}: the remainder {args[1]} must be below {args[0]}")
    return build(*args)


def _signature(name: str) -> str:
    return SIGNATURES[name].partition(":")[0]


def program_of(reg: rs.Region) -> Program:
    """The program of a ``rule_shapes`` region (a drawn rule's)."""
    if isinstance(reg, rs.Primitive):
        if not reg.call:
            raise ProgramError(f"the primitive {reg.cond!r} was built without its program")
        return reg.call
    return (OPS[reg.op], *(program_of(p) for p in reg.parts))


def english(program: Program) -> str:
    """The program in canonical English (each primitive's first training wording; compound
    parts in parentheses): what the user confirms."""
    return rs.render(region(program), _FIRST, rs.TRAIN)


class _First(random.Random):
    """A "random" source that always picks the first wording."""

    def choice(self, seq: Any) -> Any:
        return seq[0]


_FIRST = _First()


def mask(program: Program) -> int | None:
    """The forbidden moves of the board (``rule_shapes.region_mask``): None for a program with
    an idle clause."""
    return rs.region_mask(region(program), rs.move_domain())


def usable(program: Program) -> str | None:
    """Why the program is refused as a rule (None: it is usable)."""
    reg = region(program)
    if rs.region_mask(reg, rs.move_domain()) is None:
        return "a clause changes nothing (it holds on no move, on every move, or adds nothing to its partner)"
    if rs.usable(reg, rs.move_domain()) is None:
        return f"it forbids more than {rs.MAX_FORBIDDEN:.0%} of the moves or leaves too few cells to enter"
    return None


def picture(program: Program) -> str:
    """The forbidden region as a board map, north at the top: "#" a cell every move into is
    forbidden, "+" one some moves into are (it depends on where the move starts), "." open."""
    domain = rs.move_domain()
    forbidden = mask(program)
    if forbidden is None:
        return ""
    bits = format(forbidden, f"0{len(domain.moves)}b")
    into: dict[tuple[int, int], list[int]] = {}
    for (x, y, _, _), bit in zip(domain.moves, bits):
        into.setdefault((x, y), [0, 0])[bit == "1"] += 1
    rows = []
    for y in reversed(range(domain.size)):
        rows.append("".join("#" if into[(x, y)][0] == 0 else "+" if into[(x, y)][1] else "."
                            for x in range(domain.size)) + f"  y={y}")
    return "\n".join(rows)


def kind(program: Program, text: str) -> PursuitEmergency:
    """The rule "a pursuer's move is forbidden in the program's region" as an emergency kind:
    its condition (the teacher-style function is written from it, and runs only in the sandbox),
    its referee (the composed closure) and ``text``, the user's words."""
    reg = region(program)
    rule = rs.ShapeRule(reg, text, "user", rs.TRAIN, 0.0)
    return rs.as_kind(rule, text)


def examples(n: int, seed: int = 0, split: str = rs.TRAIN, wording: str | None = None) -> list[tuple[str, Program]]:
    """``n`` (rule text, program) pairs of ``rule_shapes``' drawn rules: shapes of ``split``,
    words of ``wording`` (default: the split's; ``TAUGHT``: the rules of training words, each
    clause said again in one of ``words(primitive)``, frames and connectives kept)."""
    if wording != TAUGHT:
        return [(rule.text, program_of(rule.region)) for rule in rs.draw_rules(n, seed, split, wording)]
    rng = random.Random(f"rule-program-taught:{seed}")
    return [(rng.choice(rs.FRAMES[rs.TRAIN]).format(r=rs.render(rule.region, rng, rs.TRAIN, _taught_words)),
             program_of(rule.region)) for rule in rs.draw_rules(n, seed, split, rs.TRAIN)]


def _taught_words(prim: rs.Primitive) -> tuple[str, ...]:
    return words(prim.call)


def clause_examples(n: int, seed: int = 0) -> list[tuple[str, Program]]:
    """``n`` single-primitive rules in taught words (``words``), every primitive type in turn:
    the clause-level data (one clause, one program)."""
    rng = random.Random(f"rule-program-clauses:{seed}")
    pairs = []
    types = list(rs.PRIMITIVE_TYPES)
    while len(pairs) < n:
        prim = rs.PRIMITIVES[types[len(pairs) % len(types)]](rng, rs.SIZE)
        if rs.region_mask(prim, rs.move_domain()) is not None:
            pairs.append((rng.choice(rs.FRAMES[rs.TRAIN]).format(r=rng.choice(words(prim.call))), prim.call))
    return pairs


def manual() -> str:
    """The language as the student reads it before a clause: each primitive's program and the
    condition it names, one a line, then the combinators."""
    return ("A primitive names moves from (px, py) to (x, y):\n" + "\n".join(SIGNATURES.values())
            + "\nClauses are joined by And(p, q), Or(p, q), Except(p, q), Not(p).")


def words(program: Program) -> tuple[str, ...]:
    """A primitive's taught wordings (what the reader is taught to read as it): its training
    wordings, then the teacher's paraphrases (``paraphrases.PARAPHRASES``) with its numbers."""
    reg = region(program)
    if not isinstance(reg, rs.Primitive):
        raise ProgramError(f"not a primitive: {program!r}")
    key, numbers = _paraphrase_key(program)
    return reg.train_words + tuple(t.format(**numbers) for t in PARAPHRASES.get(key, ()))


# The names of each primitive's numbers in the paraphrases' templates.
_PLACES = {"cell": "ab", "column": "a", "row": "b", "diagonal": "c", "anti_diagonal": "c", "west_of": "a",
           "east_of": "a", "south_of": "b", "north_of": "b", "distance": "abd",
           **{name: ("x0", "x1", "y0", "y1") for name in ("rectangle", "border", "start")},
           "wall_x": ("x", "y0", "y1"), "wall_y": ("y", "x0", "x1")}


def _paraphrase_key(program: Program) -> tuple[str, dict[str, int]]:
    """The paraphrases' key of a primitive (parity and remainders, and lengths, by case) and
    its numbers by placeholder."""
    name, args = program[0], program[1:]
    if name.endswith("_mod"):
        k, r = args
        return f"{name}/{('even', 'odd')[r] if k == 2 else k}", {"k": k, "r": r}
    if name == "length":
        return f"length/{args[0]}", {}
    numbers = dict(zip(_PLACES.get(name, ()), args))
    if name.startswith("wall_"):
        numbers["next"] = args[0] + 1
    return name, numbers


# How rules are said: the sentence around the forbidden (or, for "needs", the allowed) region.
# A prohibition is a modal ("may not", "are not allowed to", ...) before a verb of moving into
# a place ("enter", "land on", ...), or "barred from" (and the like) before its gerund.
MODALS = ("may not", "may no longer", "may never", "must not", "must no longer", "must never", "cannot",
          "can not", "can no longer", "can't", "should not", "shall not", "are not allowed to",
          "is not allowed to", "are no longer allowed to", "is no longer allowed to", "are not permitted to",
          "is not permitted to", "are forbidden to", "is forbidden to")
VERBS = ("enter", "stop on", "stop in", "land on", "land in", "move to", "move onto", "move into", "go to",
         "go into", "go onto", "step on", "step onto", "step into", "end on", "end in", "end a move on",
         "end a move in", "end their move on", "end their move in", "end its move on", "end its move in",
         "end up on", "end up in", "finish on", "finish in", "occupy", "visit", "reach", "move", "step", "go",
         "make a move that", "make any move that", "make moves that", "end their moves on", "end their moves in",
         "end moves on", "end moves in", "make moves of", "make a move of", "make any move of", "stand on", "stand in",
         "stop at", "be on", "be in", "end up at", "come to", "move to any")
BARRED = ("are barred from", "is barred from", "are banned from", "is banned from", "are prohibited from",
          "is prohibited from", "are forbidden from", "is forbidden from")
GERUNDS = ("entering", "stopping on", "landing on", "landing in", "moving to", "moving onto", "moving into",
           "going to", "going into", "stepping on", "stepping onto", "stepping into", "ending a move on",
           "ending a move in", "ending their move on", "ending their move in", "occupying", "visiting",
           "moving", "making a move that", "making any move that", "making moves that")
ONLY = ("may only", "may only ever", "can only", "can only ever", "are only allowed to", "is only allowed to")
STAY = ("must stay", "must remain", "must always stay", "must always remain", "are required to stay",
        "is required to stay", "are required to remain", "is required to remain", "have to stay", "has to stay")
# an obligation: what the moves must do, the complement of what is forbidden ("every move must be one
# step long", "pursuers must end every move on row 0"); its region never opens with a negation
OBLIGE = ("must", "must always", "have to", "has to", "are required to", "is required to", "need to", "needs to",
          "are obliged to", "is obliged to")
OBLIGE_VERBS = (*VERBS, "end every move", "end each move", "finish every move", "finish each move", "be", "always end",
                "always finish", "take the pursuer", "take it", "take them")
AVOID = ("must keep out of", "must stay out of", "must stay away from", "must keep away from", "must keep clear of",
         "must stay clear of", "must avoid", "have to avoid", "has to avoid", "must keep off", "must stay off")
FRAMES = (
    *(("{_} " + w + " {r}", True) for w in ("when", "whenever", "if")),
    *(("{_} " + m + " " + v + " {r}", True) for m in MODALS for v in VERBS),
    *(("{_} " + b + " " + g + " {r}", True) for b in BARRED for g in GERUNDS),
    *(("{_} no " + who + " " + m + " " + v + " {r}", True) for who in ("piece", "pursuer")
      for m in ("may", "can", "is allowed to") for v in VERBS),
    *(("{_} " + w + " {r}", False) for w in ("needs", "only if", "only when", "must satisfy")),
    # a region of allowed moves: "pursuers may only land on even columns", "must stay north of row 5"
    *(("{_} " + m + " " + v + " {r}", False) for m in ONLY for v in VERBS),
    # "pursuers may land only in odd columns"
    *(("{_} " + m + " " + v + " only " + p + " {r}", False) for m in ("may", "can", "are allowed to", "is allowed to")
      for v in ("land", "stop", "end", "end up", "move", "go", "step", "finish", "stand", "end their moves",
                "end moves", "end a move") for p in ("in", "on", "at", "into", "onto", "to", "within", "inside")),
    *(("{_} " + m + " {r}", False) for m in STAY),
    *(("{_} " + m + " {r}", False) for m in OBLIGE),
    *(("{_} " + m + " " + v + " {r}", False) for m in OBLIGE for v in OBLIGE_VERBS),
    *(("{_} " + m + " {r}", True) for m in AVOID),
)
# Words that may open the region after its frame ("... if the following holds: ...", "... may not
# move to (x, y) when ...": the move's own cells named before the condition).
OPENERS = ("the following holds: {r}", "the following is true: {r}", "a cell (x, y) with {r}",
           "cells (x, y) with {r}", "a cell with {r}",
           *(f"{cells} {w} {{r}}" for cells in ("(x, y)", "to (x, y)", "from (px, py) to (x, y)", "a cell (x, y)")
             for w in ("when", "whenever", "if")))
# The English connectives: how each combinator joins its clauses.
CONNECTIVES = {
    "And": ("{a} and {b}", "both {a} and {b}", "{a} and also {b}", "{a} as well as {b}",
            "{a} and at the same time {b}"),
    "Or": ("{a} or {b}", "either {a} or {b}", "{a} or else {b}", "at least one of the following holds: {a}; {b}",
           "one of the following holds: {a}; {b}"),
    "Except": ("{a} except when {b}", "{a} except if {b}", "{a} unless {b}", "{a} but not if {b}",
               "{a} but not when {b}", "{a} other than when {b}", "{a} except where {b}", "{a} except in {b}",
               "{a} except on {b}", "{a} except for {b}", "{a} apart from {b}", "{a} but not in {b}",
               "{a} but not on {b}", "{a} anywhere other than in {b}", "{a} anywhere other than {b}",
               "{a} anywhere but in {b}", "{a} anywhere but {b}", "{a} except at {b}", "{a} except along {b}",
               "{a} except {b}"),
    "Not": ("it is not the case that {a}", "not ({a})", "it is false that {a}", "it is not true that {a}"),
}


# Words for what the language cannot say: a rule that needs them is refused, not misread.
OUTSIDE = (
    (re.compile(r"\bevader\b", re.I), "the evader's cell or distance"),
    (re.compile(r"\b(turns?|rounds?|times|twice|consecutive|per game)\b", re.I),
     "counts of moves, turns or time"),
)


# A remark in parentheses with no number and no comparison ("(they may jump over that row; the
# evader may stand on it)") says what the rule leaves alone, not a condition of it.
ASIDE = re.compile(r"\([^()0-9<>=]*\)")


def outside(text: str) -> str | None:
    """Why the words cannot be said in this language (None: they may be); asides in parentheses
    without numbers or comparisons are not conditions, and are not looked at."""
    said = ASIDE.sub(" ", text)
    for pattern, what in OUTSIDE:
        found = pattern.search(said)
        if found:
            return (f"the rule speaks of {found.group(0)!r}, and the rule language cannot say anything about "
                    f"{what}: a rule here names the moves a pursuer may not make from its own cell")
    return None


NOTATION_NAMES = frozenset({"x", "y", "px", "py"})
NEAR = 2        # primitives with at most this many stated numbers also try each number +- 1 (x >= 13: east_of(12))


@lru_cache(maxsize=1)
def _notation_values() -> dict[str, Any]:
    import numpy as np
    moves = np.array(rs.move_domain().moves, dtype=np.int64)
    return {name: moves[:, i] for i, name in enumerate(("x", "y", "px", "py"))}


def _as_mask(held: Any) -> int:
    """A boolean array over the domain's moves as a ``rule_shapes`` mask (move 0 the highest bit)."""
    import numpy as np
    bits = np.broadcast_to(np.asarray(held, dtype=bool), _notation_values()["x"].shape)
    return int.from_bytes(np.packbits(bits).tobytes(), "big") >> (-len(bits) % 8)


def _candidates(numbers: list[int]) -> list[Program]:
    """Every primitive whose stated parameters are among ``numbers`` (or one away, for those with
    at most ``NEAR`` of them)."""
    out = []
    for name, (_, params) in PRIMITIVES.items():
        stated = sum(p is FROM_TEXT for p in params)
        near = sorted({m for n in numbers for m in (n - 1, n, n + 1)}) if stated <= NEAR else sorted(set(numbers))
        choices = [near if p is FROM_TEXT else p for p in params]
        out += [(name, *args) for args in itertools.product(*choices)]
    return out


def notation(clause: str) -> tuple[Program, ...]:
    """The primitives that a condition written in symbols in ``clause`` denotes exactly (same
    moves), e.g. ``rectangle(11, 15, 11, 15)`` for "11 <= x <= 15 and 11 <= y <= 15", or where
    none does, the negations of those it leaves out exactly (``Not(length(2))`` for
    "|x - px| + |y - py| <= 1"); empty when the clause has no such condition."""
    found: list[Program] = []
    for text, _ in nt.segments(clause, NOTATION_NAMES):
        found += [p for p in _denoted(text) if p not in found]
    return tuple(found)


@lru_cache(maxsize=1024)
def _denoted(segment: str) -> tuple[Program, ...]:
    """What one condition in symbols denotes (``notation``), by its text: the same condition
    recurs in many candidate clauses of one rule."""
    domain = rs.move_domain()
    try:
        held = _as_mask(nt.evaluate(nt.parse(segment, NOTATION_NAMES), _notation_values()))
    except (nt.NotationError, ValueError, TypeError, OverflowError):
        return ()
    if held in (0, domain.full):
        return ()
    same, opposite = [], []
    for program in _candidates(numbers_in(segment)):
        try:
            own = rs.primitive_mask(region(program), domain)
        except (LDEngineError, ValueError):
            continue
        if own == held:
            same.append(program)
        elif own == domain.full & ~held:
            opposite.append(("Not", program))
    return tuple(same or opposite)


class PursuitRules:
    """Pursuit's rule language, as ``ldengine.rulelang`` reads it (registered by the plugin)."""
    task = TASK
    stage = "pursuer.decide"
    combinators = {"And": 2, "Or": 2, "Except": 2, "Not": 1}
    primitives = {name: params for name, (_, params) in PRIMITIVES.items()}
    max_depth = 2
    frames = FRAMES
    openers = OPENERS
    connectives = CONNECTIVES
    max_primitives = rs.MAX_PRIMITIVES
    covers = ("cells, columns, rows, diagonals, rectangles and their borders, half-planes, parity and remainders "
              "of x, y or x + y, Manhattan distance to a cell, move directions and lengths, walls between columns "
              "or rows, where the pursuer starts; joined by and / or / except / not, two deep, three primitives")
    lacks = ("the evader, the other pursuers, counts of moves or time, or a region these primitives cannot draw")
    lexicon = LEXICON

    def manual(self) -> str:
        return manual()

    def english(self, program: Program) -> str:
        return english(program)

    def denotation(self, program: Program) -> int | None:
        return mask(program)

    def refusal(self, program: Program) -> str | None:
        return usable(program)

    def kind(self, program: Program, text: str) -> PursuitEmergency:
        return kind(program, text)

    def picture(self, program: Program) -> str:
        return picture(program)

    def outside(self, text: str) -> str | None:
        return outside(text)

    def examples(self, n: int, seed: int = 0, split: str = rs.TRAIN,
                 wording: str | None = None) -> list[tuple[str, Program]]:
        """Rules of ``split``'s shapes; in words of ``wording``, by default the taught words for the
        training split (what the reader is trained on), the split's own words otherwise."""
        return examples(n, seed, split, wording or (TAUGHT if split == rs.TRAIN else None))

    def words(self, program: Program) -> tuple[str, ...]:
        return words(program)

    def notation(self, clause: str) -> tuple[Program, ...]:
        return notation(clause)

    def clause_examples(self, n: int, seed: int = 0) -> list[tuple[str, Program]]:
        return clause_examples(n, seed)
