"""A compositional language of pursuit rules, for training the writer on rules nobody listed.

A rule says when a pursuer's move from (px, py) to (x, y) is forbidden: a *region* of
moves, built from *primitives* (a column, a rectangle, a move direction, a wall, ...)
joined by the *combinators* and / or / not / except, nested at most two deep, with at
most three primitives. Each piece exists three ways, built from the same parameters:
a Python condition over ``x, y, px, py`` (the teacher's reference function is written
from it, and runs only in the sandbox), a closure (the referee's rule: generated text
is never evaluated in the engine's process) and English wordings.

A rule's *shape* is its tree with primitive types only, e.g. ``and(column,not(distance))``;
and / or are commutative and associative, so their parts are flattened and sorted in
the signature. Whole shapes are held out: ``split_of`` puts a fixed ~20% of signatures
(by a hash) in "eval" only. Wordings are held out too: every frame, combinator and
primitive has "train" wordings and differently written "eval" ones.

``shape_rules(n, seed, split)`` gives ``n`` non-trivial rules as ``PursuitEmergency``
kinds without parameters (``draw`` gives ``{}``; text and condition are filled in), so
the writing and verification code takes them as it takes the hand-written kinds.
"""
from __future__ import annotations

import hashlib
import itertools
import operator
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterator, Union

from ldengine_plugins.pursuit.emergencies import PursuitEmergency
from ldengine_plugins.pursuit.rules import REACH

SIZE = 21
TRAIN, EVAL = "train", "eval"
EVAL_PERCENT = 20           # the share of shape signatures held out for "eval" (by hash)
MAX_FORBIDDEN = 0.8         # a rule forbidding more of the board's moves than this is refused
MIN_OPEN = 0.25             # ... and one leaving fewer cells enterable by a single step
MAX_PRIMITIVES = 3
PARAM_TRIES = 8             # parameter draws per shape before another shape is drawn
MAX_MISSES = 1000           # draws in a row without a new rule before giving up (a tiny board)

Test = Callable[[int, int, int, int], bool]     # (x, y, px, py) -> in the region


# ---- primitives ------------------------------------------------------------------------------

Factor = tuple[str, Callable[[int, int], bool]]     # (what it reads, a closure over those two numbers)
READS: dict[str, Callable[[int, int, int, int], tuple[int, int]]] = {
    "cell": lambda x, y, px, py: (x, y), "source": lambda x, y, px, py: (px, py),
    "step": lambda x, y, px, py: (x - px, y - py), "xs": lambda x, y, px, py: (x, px),
    "ys": lambda x, y, px, py: (y, py),
}


@dataclass(frozen=True)
class Primitive:
    """One clause with its parameters drawn: a region of moves.

    The region is where every factor holds; a factor reads two numbers of the move
    (``READS``: the destination, the pursuer's cell, the step, or one axis before and
    after), so the region can be tabulated over a few hundred values, not every move.
    """
    type: str
    cond: str                                   # equal conditions: equal primitives (masks are cached by it)
    factors: tuple[Factor, ...] = field(compare=False)
    train_words: tuple[str, ...] = field(compare=False)
    eval_words: tuple[str, ...] = field(compare=False)
    call: tuple = field(default=(), compare=False)     # as a program: (name, *numbers), see rule_program

    def words(self, wording: str) -> tuple[str, ...]:
        return self.train_words if wording == TRAIN else self.eval_words

    @property
    def test(self) -> Test:
        """The region as a closure over (x, y, px, py)."""
        parts = [(READS[reads], holds) for reads, holds in self.factors]
        return lambda x, y, px, py: all(holds(*pick(x, y, px, py)) for pick, holds in parts)


def _cell(rng: random.Random, size: int) -> Primitive:
    return cell(rng.randint(1, size - 2), rng.randint(1, size - 2))


def cell(a: int, b: int) -> Primitive:
    return Primitive("cell", f"x == {a} and y == {b}", (("cell", lambda x, y: x == a and y == b),),
                     (f"the move ends on cell ({a}, {b})", f"(x, y) == ({a}, {b})"),
                     (f"the pursuer lands exactly on ({a}, {b})",), ("cell", a, b))


def _column(rng: random.Random, size: int) -> Primitive:
    return column(rng.randint(1, size - 2))


def column(a: int) -> Primitive:
    return Primitive("column", f"x == {a}", (("cell", lambda x, y: x == a),),
                     (f"the move ends in column x = {a}", f"x == {a}"),
                     (f"the destination's x coordinate equals {a}",), ("column", a))


def _row(rng: random.Random, size: int) -> Primitive:
    return row(rng.randint(1, size - 2))


def row(b: int) -> Primitive:
    return Primitive("row", f"y == {b}", (("cell", lambda x, y: y == b),),
                     (f"the move ends in row y = {b}", f"y == {b}"),
                     (f"the destination's y coordinate equals {b}",), ("row", b))


def _diagonal(rng: random.Random, size: int) -> Primitive:
    if rng.random() < 0.5:
        return diagonal(rng.randint(-(size // 2), size // 2))
    return anti_diagonal(rng.randint(4, 2 * size - 6))


def diagonal(c: int) -> Primitive:
    return Primitive("diagonal", f"x - y == {c}", (("cell", lambda x, y: x - y == c),),
                     (f"the move ends on the diagonal x - y == {c}", f"x - y == {c}"),
                     (f"the destination's x minus its y equals {c}",), ("diagonal", c))


def anti_diagonal(c: int) -> Primitive:
    return Primitive("diagonal", f"x + y == {c}", (("cell", lambda x, y: x + y == c),),
                     (f"the move ends on the anti-diagonal x + y == {c}", f"x + y == {c}"),
                     (f"the destination's coordinates add up to {c}",), ("anti_diagonal", c))


def _span(rng: random.Random, size: int, least: int, most: int) -> tuple[int, int]:
    """An inclusive range of ``least`` to ``most`` lines, off the board's edge lines."""
    width = rng.randint(least, most)
    start = rng.randint(1, size - width - 1)
    return start, start + width - 1


def _box(name: str, reads: str, x: str, y: str, says: str, again: str,
         a0: int, a1: int, b0: int, b1: int) -> Primitive:
    """A rectangle of the cells that ``reads`` names (the destination, or the pursuer's own cell)."""
    cond = f"{a0} <= {x} <= {a1} and {b0} <= {y} <= {b1}"
    return Primitive(name, cond, ((reads, lambda u, v: a0 <= u <= a1 and b0 <= v <= b1),),
                     (f"{says} {a0} <= {x} <= {a1}, {b0} <= {y} <= {b1}", f"({cond})"),
                     (f"{again} columns {a0} to {a1} and rows {b0} to {b1}",), (name, a0, a1, b0, b1))


def _rectangle(rng: random.Random, size: int) -> Primitive:
    return rectangle(*_span(rng, size, 2, 8), *_span(rng, size, 2, 8))


def rectangle(a0: int, a1: int, b0: int, b1: int) -> Primitive:
    return _box("rectangle", "cell", "x", "y", "the move ends inside the rectangle", "the destination lies in",
                a0, a1, b0, b1)


def _border(rng: random.Random, size: int) -> Primitive:
    return border(*_span(rng, size, 3, 9), *_span(rng, size, 3, 9))


def border(a0: int, a1: int, b0: int, b1: int) -> Primitive:
    cond = f"{a0} <= x <= {a1} and {b0} <= y <= {b1} and (x == {a0} or x == {a1} or y == {b0} or y == {b1})"

    def rim(x: int, y: int) -> bool:
        return a0 <= x <= a1 and b0 <= y <= b1 and (x == a0 or x == a1 or y == b0 or y == b1)
    return Primitive("border", cond, (("cell", rim),),
                     (f"the move ends on the border of the rectangle {a0} <= x <= {a1}, {b0} <= y <= {b1} "
                      f"(a cell of it in column {a0} or {a1}, or in row {b0} or {b1})", f"({cond})"),
                     (f"the destination is one of the outermost cells of the box from ({a0}, {b0}) "
                      f"to ({a1}, {b1})",), ("border", a0, a1, b0, b1))


_SIDES = {  # half-plane: (closure over the coordinate and the bound, compass words, plain words)
    "x <": (operator.lt, "west of column x", "smaller than"),
    "x >": (operator.gt, "east of column x", "greater than"),
    "y <": (operator.lt, "south of row y", "smaller than"),
    "y >": (operator.gt, "north of row y", "greater than"),
}


SIDE_NAMES = {"x <": "west_of", "x >": "east_of", "y <": "south_of", "y >": "north_of"}


def _half_plane(rng: random.Random, size: int) -> Primitive:
    side = rng.choice(sorted(_SIDES))
    return half_plane(side, rng.randint(3, size - 4))


def half_plane(side: str, a: int) -> Primitive:
    compare, compass, words = _SIDES[side]
    on_x = side.startswith("x")
    cond = f"{side} {a}"
    return Primitive("half_plane", cond, (("cell", lambda x, y: compare(x if on_x else y, a)),),
                     (f"the move ends {compass} = {a} ({cond})", cond),
                     (f"the destination's {side[0]} coordinate is {words} {a}",), (SIDE_NAMES[side], a))


_TERMS = {  # modular: (closure over the destination, words)
    "x": (lambda x, y: x, "the destination's x coordinate"),
    "y": (lambda x, y: y, "the destination's y coordinate"),
    "x + y": (lambda x, y: x + y, "the sum of the destination's coordinates"),
}


TERM_NAMES = {"x": "x_mod", "y": "y_mod", "x + y": "sum_mod"}


def _modular(rng: random.Random, size: int) -> Primitive:
    term, k = rng.choice(sorted(_TERMS)), rng.choice((2, 3))
    return modular(term, k, rng.randrange(k))


def modular(term: str, k: int, r: int) -> Primitive:
    value, words = _TERMS[term]
    cond = f"({term}) % {k} == {r}" if "+" in term else f"{term} % {k} == {r}"
    if k == 2:
        first = f"{term} is {'even' if r == 0 else 'odd'}"
    else:
        first = f"{term} leaves remainder {r} when divided by {k}"
    later = f"is {r} more than a multiple of {k}" if r else f"is a multiple of {k}"
    return Primitive("modular", cond, (("cell", lambda x, y: value(x, y) % k == r),),
                     (first, cond), (f"{words} {later}",), (TERM_NAMES[term], k, r))


def _distance(rng: random.Random, size: int) -> Primitive:
    return distance(rng.randint(3, size - 4), rng.randint(3, size - 4), rng.randint(1, 5))


def distance(a: int, b: int, d: int) -> Primitive:
    cond = f"abs(x - {a}) + abs(y - {b}) <= {d}"
    return Primitive("distance", cond, (("cell", lambda x, y: abs(x - a) + abs(y - b) <= d),),
                     (f"the move ends within Manhattan distance {d} of ({a}, {b})", cond),
                     (f"the destination is at most {d} step{'s' if d > 1 else ''} (Manhattan distance) away "
                      f"from ({a}, {b})",), ("distance", a, b, d))


_DIRECTIONS: dict[str, tuple[Factor, str, str]] = {  # condition: (factor, train words, eval words)
    "x > px": (("xs", operator.gt), "the move goes east (x > px)", "the pursuer's x coordinate increases"),
    "x < px": (("xs", operator.lt), "the move goes west (x < px)", "the pursuer's x coordinate decreases"),
    "y > py": (("ys", operator.gt), "the move goes north (y > py)", "the pursuer's y coordinate increases"),
    "y < py": (("ys", operator.lt), "the move goes south (y < py)", "the pursuer's y coordinate decreases"),
    "x == px": (("xs", operator.eq), "the move stays in its column (x == px)",
                "the pursuer's x coordinate does not change"),
    "y == py": (("ys", operator.eq), "the move stays in its row (y == py)",
                "the pursuer's y coordinate does not change"),
}


DIRECTION_NAMES = {"x > px": "goes_east", "x < px": "goes_west", "y > py": "goes_north", "y < py": "goes_south",
                   "x == px": "keeps_column", "y == py": "keeps_row"}


def _direction(rng: random.Random, size: int) -> Primitive:
    return direction(rng.choice(sorted(_DIRECTIONS)))


def direction(cond: str) -> Primitive:
    factor, train, later = _DIRECTIONS[cond]
    return Primitive("direction", cond, (factor,), (train, cond), (later,), (DIRECTION_NAMES[cond],))


_LENGTHS = ("the pursuer stays put", "the move is a single step", "the move covers two cells")


def _length(rng: random.Random, size: int) -> Primitive:
    return length(rng.randint(0, REACH))


def length(n: int) -> Primitive:
    cond = f"abs(x - px) + abs(y - py) == {n}"
    later = "the pursuer does not move" if n == 0 else f"the move has Manhattan length {n}"
    return Primitive("length", cond, (("step", lambda dx, dy: abs(dx) + abs(dy) == n),),
                     (f"{_LENGTHS[n]} (|x - px| + |y - py| == {n})", cond), (later,), ("length", n))


def _crossing(rng: random.Random, size: int) -> Primitive:
    """A wall segment, as the ``wall`` kind's: crossing the line between two columns (or
    rows) by a move that starts or ends beside the wall."""
    line, (lo, hi) = rng.randint(3, size - 5), _span(rng, size, 3, 8)
    return crossing("x" if rng.random() < 0.5 else "y", line, lo, hi)


def crossing(across: str, line: int, lo: int, hi: int) -> Primitive:
    """A wall between lines ``line`` and ``line + 1`` of ``across`` ("x": columns, "y": rows),
    spanning ``lo`` to ``hi`` along the other axis."""
    along = "y" if across == "x" else "x"
    lines, sides = ("columns", "rows") if across == "x" else ("rows", "columns")
    cond = (f"min(p{across}, {across}) <= {line} < max(p{across}, {across}) and "
            f"({lo} <= p{along} <= {hi} or {lo} <= {along} <= {hi})")
    factors = ((f"{across}s", lambda a, pa: min(pa, a) <= line < max(pa, a)),
               (f"{along}s", lambda b, pb: lo <= pb <= hi or lo <= b <= hi))
    wall = f"the wall between {lines} {across} = {line} and {across} = {line + 1}"
    return Primitive("crossing", cond, factors,
                     (f"the move crosses {wall} that spans {sides} {lo} to {hi} (min(p{across}, {across}) <= {line} "
                      f"< max(p{across}, {across}), starting or ending in {sides} {lo} to {hi})", f"({cond})"),
                     (f"the move passes from one side of the line between {across} = {line} and "
                      f"{across} = {line + 1} to the other while starting or ending in {sides} {lo} to {hi}",),
                     (f"wall_{across}", line, lo, hi))


def _start(rng: random.Random, size: int) -> Primitive:
    return start(*_span(rng, size, 3, 9), *_span(rng, size, 3, 9))


def start(a0: int, a1: int, b0: int, b1: int) -> Primitive:
    return _box("start", "source", "px", "py", "the pursuer starts inside the rectangle",
                "the pursuer currently stands in", a0, a1, b0, b1)


PRIMITIVES: dict[str, Callable[[random.Random, int], Primitive]] = {
    "cell": _cell, "column": _column, "row": _row, "diagonal": _diagonal, "rectangle": _rectangle,
    "border": _border, "half_plane": _half_plane, "modular": _modular, "distance": _distance,
    "direction": _direction, "length": _length, "crossing": _crossing, "start": _start,
}
PRIMITIVE_TYPES = tuple(PRIMITIVES)


# ---- combinators and regions -----------------------------------------------------------------

BINARY = ("and", "or", "except")
COMBINATORS = ("not", *BINARY)
COMBINATOR_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "and": {TRAIN: ("{a} and {b}", "both {a} and {b}"), EVAL: ("{a}, and at the same time {b}",)},
    "or": {TRAIN: ("{a} or {b}", "either {a} or {b}"), EVAL: ("at least one of the following holds: {a}; {b}",)},
    "not": {TRAIN: ("it is not the case that {a}", "not ({a})"), EVAL: ("it is false that {a}",)},
    "except": {TRAIN: ("{a}, except when {b}", "{a} unless {b}"), EVAL: ("{a}, but not if {b}",)},
}
FRAMES: dict[str, tuple[str, ...]] = {
    TRAIN: ("Pursuers may no longer move from (px, py) to (x, y) when {r}.",
            "A move from (px, py) to (x, y) is now forbidden when {r}.",
            "New rule: a pursuer on (px, py) may not move to (x, y) if {r}."),
    EVAL: ("From now on, a pursuer standing on (px, py) must not go to (x, y) whenever {r}.",
           "Emergency: any pursuer move from (px, py) to (x, y) is illegal if the following holds: {r}."),
}


@dataclass(frozen=True)
class Combined:
    """A combinator over one ("not") or two regions; ``except``: the first and not the second."""
    op: str
    parts: tuple[Region, ...]


Region = Union[Primitive, Combined]


def condition(region: Region) -> str:
    """The region as a Python expression over x, y, px, py."""
    return _condition(region)[0]


def allowed_condition(region: Region) -> str:
    """The allowed-move condition of the rule "forbidden when ``region``": ``not (...)``, or the
    inner condition when the region is itself a negation."""
    return _negation(region)[0]


def _condition(region: Region) -> tuple[str, str]:
    """The condition and its top operator: "atom" (one comparison), "not", "and", "or", or
    "mixed" (a primitive's own and / or); parts are parenthesised unless their top operator
    binds at least as tightly, and an and-part of an or is parenthesised for the reader."""
    if isinstance(region, Primitive):
        return region.cond, "mixed" if any(w in f" {region.cond} " for w in (" and ", " or ")) else "atom"
    if region.op == "not":
        return _negation(region.parts[0])
    joined = "or" if region.op == "or" else "and"
    first = _operand(_condition(region.parts[0]), joined)
    second = _negation(region.parts[1]) if region.op == "except" else _condition(region.parts[1])
    return f"{first} {joined} {_operand(second, joined)}", joined


def _negation(region: Region) -> tuple[str, str]:
    """``not (region)``, or the inner part of a negated negation."""
    if isinstance(region, Combined) and region.op == "not":
        return _condition(region.parts[0])
    return f"not ({_condition(region)[0]})", "not"


def _operand(part: tuple[str, str], joined: str) -> str:
    text, top = part
    return text if top in ("atom", "not", joined) else f"({text})"


def predicate(region: Region) -> Test:
    """The region as a closure over (x, y, px, py), composed from the primitives' closures."""
    if isinstance(region, Primitive):
        return region.test
    tests = [predicate(part) for part in region.parts]
    if region.op == "not":
        return lambda x, y, px, py: not tests[0](x, y, px, py)
    if region.op == "and":
        return lambda x, y, px, py: tests[0](x, y, px, py) and tests[1](x, y, px, py)
    if region.op == "or":
        return lambda x, y, px, py: tests[0](x, y, px, py) or tests[1](x, y, px, py)
    return lambda x, y, px, py: tests[0](x, y, px, py) and not tests[1](x, y, px, py)


def render(region: Region, rng: random.Random, wording: str = TRAIN,
           words: Callable[[Primitive], tuple[str, ...]] | None = None) -> str:
    """The region in English, a wording drawn per clause from the ``wording`` set (or from
    ``words(primitive)``, connectives still of ``wording``); a compound part of a combinator is
    put in parentheses, so the grouping is never ambiguous."""
    if isinstance(region, Primitive):
        return rng.choice(words(region) if words else region.words(wording))
    parts = [render(p, rng, wording, words) for p in region.parts]
    parts = [f"({text})" if isinstance(p, Combined) else text for p, text in zip(region.parts, parts)]
    template = rng.choice(COMBINATOR_WORDS[region.op][wording])
    return template.format(a=parts[0], b=parts[-1])


def rule_text(region: Region, rng: random.Random, wording: str = TRAIN) -> str:
    """The whole rule in words: a sentence frame around the forbidden region."""
    return rng.choice(FRAMES[wording]).format(r=render(region, rng, wording))


def primitives_of(region: Region) -> list[Primitive]:
    if isinstance(region, Primitive):
        return [region]
    return [p for part in region.parts for p in primitives_of(part)]


# ---- shapes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """A rule's tree with primitive types only: ``op`` is a primitive type at a leaf."""
    op: str
    parts: tuple[Shape, ...] = ()


def signature(shape: Shape) -> str:
    """A stable string for the shape; and / or are flattened and their parts sorted, so
    ``and(a,and(b,c))``, ``and(and(c,b),a)`` and ``and(a,b,c)`` are one shape."""
    if not shape.parts:
        return shape.op
    if shape.op in ("and", "or"):
        return f"{shape.op}({','.join(sorted(_flat(shape, shape.op)))})"
    return f"{shape.op}({','.join(signature(p) for p in shape.parts)})"


def _flat(shape: Shape, op: str) -> Iterator[str]:
    for part in shape.parts:
        if part.op == op:
            yield from _flat(part, op)
        else:
            yield signature(part)


def split_of(sig: str) -> str:
    """"eval" for a fixed ~``EVAL_PERCENT``% of signatures (the first 8 hex digits of the
    signature's SHA-256, modulo 100), "train" for the rest; no rule of an eval shape is ever
    drawn for training."""
    digest = int(hashlib.sha256(f"rule-shapes/{sig}".encode()).hexdigest()[:8], 16)
    return EVAL if digest % 100 < EVAL_PERCENT else TRAIN


def shape_of(region: Region) -> Shape:
    if isinstance(region, Primitive):
        return Shape(region.type)
    return Shape(region.op, tuple(shape_of(p) for p in region.parts))


# Tree templates, with how often each is drawn: "P" a primitive, "op" a binary combinator.
# Depth at most 2, at most MAX_PRIMITIVES primitives, never not(not(...)).
TEMPLATES: tuple[tuple[int, object], ...] = (
    (1, "P"), (1, ("not", "P")), (3, ("op", "P", "P")), (1, ("not", ("op", "P", "P"))),
    (1, ("op", ("not", "P"), "P")), (1, ("op", "P", ("not", "P"))), (1, ("op", ("not", "P"), ("not", "P"))),
    (2, ("op", ("op", "P", "P"), "P")), (2, ("op", "P", ("op", "P", "P"))),
)


def random_shape(rng: random.Random) -> Shape:
    template = rng.choices([t for _, t in TEMPLATES], [w for w, _ in TEMPLATES])[0]
    return _fill(template, rng)


def _fill(template: object, rng: random.Random) -> Shape:
    if template == "P":
        return Shape(rng.choice(PRIMITIVE_TYPES))
    assert isinstance(template, tuple)
    op = rng.choice(BINARY) if template[0] == "op" else template[0]
    return Shape(op, tuple(_fill(t, rng) for t in template[1:]))


def _every_fill(template: object) -> Iterator[Shape]:
    if template == "P":
        yield from (Shape(t) for t in PRIMITIVE_TYPES)
        return
    assert isinstance(template, tuple)
    ops = BINARY if template[0] == "op" else (template[0],)
    for op in ops:
        for parts in itertools.product(*(list(_every_fill(t)) for t in template[1:])):
            yield Shape(op, parts)


@lru_cache(maxsize=1)
def all_signatures() -> frozenset[str]:
    """Every shape the templates can make (some never give a usable rule, e.g. and(cell,cell))."""
    return frozenset(signature(s) for _, t in TEMPLATES for s in _every_fill(t))


def instantiate(shape: Shape, rng: random.Random, size: int = SIZE) -> Region:
    """The shape with each primitive's parameters drawn."""
    if not shape.parts:
        return PRIMITIVES[shape.op](rng, size)
    return Combined(shape.op, tuple(instantiate(p, rng, size) for p in shape.parts))


# ---- the board's moves, as bit masks ---------------------------------------------------------

@dataclass(frozen=True)
class MoveDomain:
    """Every legal pursuer move of an empty board (each cell, each offset within ``REACH``, on
    the board), and per ``READS`` key the values it takes with a lookup from a table over
    those values to one entry per move."""
    size: int
    moves: tuple[tuple[int, int, int, int], ...]    # (x, y, px, py)
    values: dict[str, tuple[tuple[int, int], ...]]
    spread: dict[str, Callable]                     # table over values -> one entry per move
    dest_index: tuple[int, ...]                     # each move's destination, as an index of values["cell"]
    single_steps: int                               # the mask of moves of length 1

    @property
    def full(self) -> int:
        return (1 << len(self.moves)) - 1


@lru_cache(maxsize=4)
def move_domain(size: int = SIZE) -> MoveDomain:
    """The ``MoveDomain`` of a ``size`` x ``size`` board (built once per size)."""
    steps = [(dx, dy) for dx in range(-REACH, REACH + 1) for dy in range(-REACH, REACH + 1)
             if abs(dx) + abs(dy) <= REACH]
    moves = tuple((px + dx, py + dy, px, py) for px in range(size) for py in range(size) for dx, dy in steps
                  if 0 <= px + dx < size and 0 <= py + dy < size)
    values: dict[str, tuple[tuple[int, int], ...]] = {}
    spread: dict[str, Callable] = {}
    where: dict[str, dict[tuple[int, int], int]] = {}
    for reads, pick in READS.items():
        values[reads] = tuple(sorted({pick(*move) for move in moves}))
        where[reads] = {value: i for i, value in enumerate(values[reads])}
        spread[reads] = operator.itemgetter(*(where[reads][pick(*move)] for move in moves))
    dest = tuple(where["cell"][(x, y)] for x, y, _, _ in moves)
    single = _mask_of("".join("1" if abs(x - px) + abs(y - py) == 1 else "0" for x, y, px, py in moves))
    return MoveDomain(size, moves, values, spread, dest, single)


def _mask_of(bits: str) -> int:
    """A mask from one "0"/"1" per move, move 0 first (the highest bit): every mask is built
    this way, so they combine bit for bit."""
    return int(bits, 2)


def primitive_mask(primitive: Primitive, domain: MoveDomain) -> int:
    """The moves in the primitive's region: each factor tabulated over the values it reads."""
    return _primitive_mask(primitive, domain.size)


@lru_cache(maxsize=16384)       # primitives recur (a column, a direction): ~700 bytes a mask
def _primitive_mask(primitive: Primitive, size: int) -> int:
    domain = move_domain(size)
    mask = domain.full
    for reads, holds in primitive.factors:
        table = ["1" if holds(*value) else "0" for value in domain.values[reads]]
        mask &= _mask_of("".join(domain.spread[reads](table)))
    return mask


def full_mask(test: Test, domain: MoveDomain) -> int:
    """The moves where ``test`` holds, calling it on every move (slow; the reference)."""
    return _mask_of("".join("1" if test(*move) else "0" for move in domain.moves))


def region_mask(region: Region, domain: MoveDomain) -> int | None:
    """The region's moves, or None when some clause is idle: a part that holds on no move or
    on every move, or a combinator whose result equals one of its parts (dropping a clause
    would not change the rule)."""
    if isinstance(region, Primitive):
        own = primitive_mask(region, domain)
        return own if 0 < own < domain.full else None
    masks = [region_mask(p, domain) for p in region.parts]
    if None in masks:
        return None
    a, b = masks[0], masks[-1]
    assert a is not None and b is not None
    mask = {"not": domain.full & ~a, "and": a & b, "or": a | b, "except": a & ~b & domain.full}[region.op]
    idle = mask in (0, domain.full) or (region.op != "not" and (mask == a or (region.op != "except" and mask == b)))
    return None if idle else mask


_ZERO_ONE = bytes.maketrans(b"01", b"\x00\x01")


def open_share(forbidden: int, domain: MoveDomain) -> float:
    """The share of cells a pursuer can still enter by a single step from a neighbour."""
    allowed = format(domain.single_steps & ~forbidden & domain.full, f"0{len(domain.moves)}b")
    entered = itertools.compress(domain.dest_index, allowed.encode().translate(_ZERO_ONE))
    return len(set(entered)) / len(domain.values["cell"])


# ---- rules -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShapeRule:
    """A generated rule: a pursuer's move is forbidden when it lies in ``region``."""
    region: Region
    text: str
    split: str
    wording: str
    forbidden_share: float

    @property
    def shape(self) -> Shape:
        return shape_of(self.region)

    @property
    def signature(self) -> str:
        return signature(self.shape)

    @property
    def cond(self) -> str:
        """The allowed-move condition: not in the forbidden region (``allowed_condition``)."""
        return allowed_condition(self.region)

    def kind(self, text: str | None = None) -> PursuitEmergency:
        """The rule as a parameterless ``PursuitEmergency`` (pursuers only), in ``text`` or its own words."""
        return as_kind(self, self.text if text is None else text)

    def rewordings(self, k: int, seed: int = 0, wording: str | None = None) -> list[str]:
        """``k`` renderings drawn with ``seed`` (repeats possible), in ``wording``'s set (default: the rule's)."""
        rng = random.Random(f"rewording:{seed}:{self.cond}")
        return [rule_text(self.region, rng, wording or self.wording) for _ in range(k)]


def as_kind(rule: ShapeRule, text: str) -> PursuitEmergency:
    """A ``PursuitEmergency`` with text and condition filled in (no ``{param}`` fields) and the
    composed closure as its rule; ``summary`` carries the shape's signature."""
    if any(brace in text + rule.cond for brace in "{}"):
        raise ValueError(f"a generated rule must have no braces: {text!r}")
    digest = hashlib.sha256(f"{rule.cond}\n{text}".encode()).hexdigest()[:10]
    test = predicate(rule.region)
    return PursuitEmergency(f"shape-{digest}", text, rule.cond,
                            lambda c, p, k: not test(c[0], c[1], p[0], p[1]), _no_params,
                            pieces=("pursuer",), split=rule.split, summary=rule.signature)


def _no_params(rng: random.Random, size: int) -> dict:
    return {}


def usable(region: Region, domain: MoveDomain) -> float | None:
    """The share of the board's moves the rule forbids, or None for a rule refused: one with
    an idle clause (``region_mask``), one forbidding more than ``MAX_FORBIDDEN`` of the moves,
    or one leaving fewer than ``MIN_OPEN`` of the cells enterable by a single step."""
    mask = region_mask(region, domain)
    if mask is None:
        return None
    share = mask.bit_count() / len(domain.moves)
    if share > MAX_FORBIDDEN or open_share(mask, domain) < MIN_OPEN:
        return None
    return share


def draw_rule(rng: random.Random, split: str = TRAIN, wording: str | None = None,
              size: int = SIZE) -> ShapeRule | None:
    """One rule of a shape of ``split``, worded from ``wording``'s set (default: ``split``'s);
    None when ``PARAM_TRIES`` parameter draws of the drawn shape gave no usable rule."""
    shape = random_shape(rng)
    while split_of(signature(shape)) != split:
        shape = random_shape(rng)
    domain = move_domain(size)
    for _ in range(PARAM_TRIES):
        region = instantiate(shape, rng, size)
        share = usable(region, domain)
        if share is not None:
            words = wording or split
            return ShapeRule(region, rule_text(region, rng, words), split, words, round(share, 4))
    return None


def draw_rules(n: int, seed: int = 0, split: str = TRAIN, wording: str | None = None,
               size: int = SIZE) -> list[ShapeRule]:
    """``n`` distinct usable rules (by condition), the same for the same arguments; the first
    ``m`` of ``n`` rules are the ``m`` rules of a smaller call."""
    if split not in (TRAIN, EVAL) or (wording or split) not in (TRAIN, EVAL):
        raise ValueError(f"split and wording are {TRAIN!r} or {EVAL!r}, not {split!r} / {wording!r}")
    rng = random.Random(f"rule-shapes:{split}:{wording or split}:{seed}:{size}")
    rules: list[ShapeRule] = []
    seen: set[str] = set()
    misses = 0
    while len(rules) < n:
        rule = draw_rule(rng, split, wording, size)
        misses = misses + 1 if rule is None or rule.cond in seen else 0
        if misses > MAX_MISSES:
            raise ValueError(f"no new usable rule in {MAX_MISSES} draws on a {size}x{size} board")
        if rule is not None and rule.cond not in seen:
            seen.add(rule.cond)
            rules.append(rule)
    return rules


def shape_rules(n: int, seed: int = 0, split: str = TRAIN, wording: str | None = None,
                size: int = SIZE) -> list[PursuitEmergency]:
    """``draw_rules`` as emergency kinds: ``kind.params(seed)`` is ``{}``, and
    ``describe``, ``condition``, ``reference``, ``cases`` and ``allows`` work as for the
    hand-written kinds (``summary`` is the shape's signature)."""
    return [rule.kind() for rule in draw_rules(n, seed, split, wording, size)]


__all__ = ["BINARY", "COMBINATORS", "COMBINATOR_WORDS", "EVAL", "EVAL_PERCENT", "FRAMES", "MAX_FORBIDDEN",
           "MIN_OPEN", "PRIMITIVES", "PRIMITIVE_TYPES", "READS", "TRAIN", "Combined", "MoveDomain", "Primitive",
           "Shape", "ShapeRule", "all_signatures", "allowed_condition", "as_kind", "condition", "draw_rule",
           "draw_rules", "full_mask", "instantiate", "move_domain", "open_share", "predicate", "primitive_mask",
           "primitives_of", "random_shape", "region_mask", "render", "rule_text", "shape_of", "shape_rules",
           "signature", "split_of", "usable"]
