"""Conditions written in a rule language's own notation (``11 <= x <= 15 and y > 3``), found in
a rule's words and evaluated over the language's domain, without running any code.

Rules often state their condition in symbols, beside or instead of words: "no piece may enter
a cell (x, y) with 11 <= x <= 15 and 11 <= y <= 15", "the move ends south of row y = 15
(y < 15)". Symbols say exactly what they mean, so a clause whose symbols denote the same moves
as a primitive *is* that primitive: the reader need not guess it from the words.

``segments`` finds the stretches of a text that parse as one condition over the language's
variables (Python's own parser, ``ast.parse``); ``evaluate`` computes where a segment holds,
over numpy arrays of the variables' values, by walking its tree. Only comparisons (chained),
``and``/``or``/``not``, ``+ - * // %``, unary minus, ``abs``/``min``/``max``, tuples, the
variables and small whole numbers are accepted; nothing is compiled or executed, so a hostile
text can only fail to be a condition. ``|a|`` means ``abs(a)``; ``=`` in prose ("row y = 15") means ``==``; a comma
between two conditions means ``and`` ("1 <= x <= 4, 11 <= y <= 17").
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Mapping, Union, cast

if TYPE_CHECKING:
    import numpy

    # what ``evaluate`` computes: an array over the domain, or a tuple's items (a list of such)
    Evaluated = Union[numpy.ndarray, list["Evaluated"]]

MAX_SEGMENT = 200       # characters: longer stretches are not read as one condition
MAX_RUN = 60            # tokens of one run of the notation tried as conditions
MAX_TRIES = 20_000      # pieces of one text tried as conditions, at most (a text is a rule, not a book)
MAX_NUMBER = 10_000     # a larger constant is not a board's number
FUNCTIONS = {"abs": "abs", "min": "minimum", "max": "maximum"}          # name -> numpy's
COMPARE = {ast.Lt: "less", ast.LtE: "less_equal", ast.Gt: "greater", ast.GtE: "greater_equal",
           ast.Eq: "equal", ast.NotEq: "not_equal"}
ARITHMETIC = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.FloorDiv: "floor_divide",
              ast.Mod: "mod"}
# One token of the notation: a comparison, an operator, a bracket, a comma, a whole number, a word.
TOKEN = re.compile(r"\s*(<=|>=|==|!=|<|>|=|[-+*%(),]|//|\d+|[A-Za-z_]\w*)")


ABS_BARS = re.compile(r"\|([^|]{1,60})\|")      # |x - px| is abs(x - px)


COMPARISON = re.compile(r"[<>]|[=!]=|(?<![<>=!])=")


def compares(text: str) -> bool:
    """Whether ``text`` writes a comparison (the mark of a condition in symbols)."""
    return bool(COMPARISON.search(text))


class NotationError(ValueError):
    """Text that is not a condition of the notation."""


def _prose_equals(text: str) -> str:
    return re.sub(r"(?<![<>=!])=(?!=)", "==", text)


def parse(text: str, names: frozenset[str] | set[str]) -> ast.AST:
    """The tree of ``text`` as one condition over ``names`` (NotationError when it is not one)."""
    if len(text) > MAX_SEGMENT:
        raise NotationError("too long")
    try:
        tree = ast.parse(_prose_equals(text).strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise NotationError("not an expression") from None
    _check(tree, names)
    if not _is_condition(tree):
        raise NotationError("no comparison")
    return tree


def _check(node: ast.AST, names: frozenset[str] | set[str]) -> None:
    if isinstance(node, ast.Compare):
        if not all(type(op) in COMPARE for op in node.ops):
            raise NotationError("unknown comparison")
        parts = [node.left, *node.comparators]
    elif isinstance(node, ast.BoolOp):
        parts = node.values
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        parts = [node.operand]
    elif isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        parts = [node.left, node.right]
    elif isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords
                and 1 <= len(node.args) <= (1 if node.func.id == "abs" else 2)):
            raise NotationError("unknown function")
        parts = node.args
    elif isinstance(node, ast.Tuple):
        parts = node.elts
    elif isinstance(node, ast.Name):
        if node.id not in names:
            raise NotationError(f"unknown name {node.id!r}")
        return
    elif isinstance(node, ast.Constant):
        if type(node.value) is not int or abs(node.value) > MAX_NUMBER:
            raise NotationError("not a small whole number")
        return
    else:
        raise NotationError(f"not accepted: {type(node).__name__}")
    for part in parts:
        _check(part, names)


def _is_condition(node: ast.AST) -> bool:
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.BoolOp):
        return all(_is_condition(v) for v in node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _is_condition(node.operand)
    if isinstance(node, ast.Tuple):       # "1 <= x <= 4, 11 <= y <= 17": both hold
        return len(node.elts) > 1 and all(_is_condition(e) for e in node.elts)
    return False


@lru_cache(maxsize=1)
def _numpy() -> ModuleType:
    import numpy
    return numpy


def evaluate(node: ast.AST, values: Mapping[str, numpy.ndarray]) -> Evaluated:
    """Where the (checked) tree holds: a boolean numpy array over the domain of ``values``
    (each variable's values, one per element of the domain)."""
    np = _numpy()
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Constant):
        return np.int64(node.value)
    if isinstance(node, ast.Tuple):
        items = [evaluate(e, values) for e in node.elts]
        return items if not _is_condition(node) else np.logical_and.reduce(items)
    if isinstance(node, ast.UnaryOp):
        operand = evaluate(node.operand, values)
        return np.logical_not(operand) if isinstance(node.op, ast.Not) else np.negative(operand)
    if isinstance(node, ast.BoolOp):
        join = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return join.reduce([evaluate(v, values) for v in node.values])
    if isinstance(node, ast.BinOp):
        left, right = evaluate(node.left, values), evaluate(node.right, values)
        if isinstance(node.op, (ast.Mod, ast.FloorDiv)) and not np.all(right):
            raise NotationError("division by zero")
        return getattr(np, ARITHMETIC[type(node.op)])(left, right)
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)           # _check accepted only named functions
        args = [evaluate(a, values) for a in node.args]
        name = node.func.id
        return getattr(np, FUNCTIONS[name])(*args) if len(args) > 1 or name == "abs" else args[0]
    assert isinstance(node, ast.Compare)
    held = None
    left = evaluate(node.left, values)
    for op, right_node in zip(node.ops, node.comparators):
        right = evaluate(right_node, values)
        if isinstance(left, list) or isinstance(right, list):      # (x, y) == (3, 4)
            if not (isinstance(left, list) and isinstance(right, list) and len(left) == len(right)
                    and isinstance(op, (ast.Eq, ast.NotEq))):
                raise NotationError("tuples compare only equal or not")
            same = np.logical_and.reduce([np.equal(a, b) for a, b in zip(left, right)])
            step = same if isinstance(op, ast.Eq) else np.logical_not(same)
        else:
            step = getattr(np, COMPARE[type(op)])(left, right)
        held = step if held is None else np.logical_and(held, step)
        left = right
    return cast("numpy.ndarray", held)     # not None: a comparison has at least one operator


def _edge(token: str) -> bool:
    """Whether a condition may end before (or start after) ``token`` inside a run."""
    return token in {",", "(", ")", "and", "or", "not"}


def segments(text: str, names: frozenset[str] | set[str]) -> list[tuple[str, ast.AST]]:
    """The stretches of ``text`` that are each one condition over ``names``, with their trees,
    left to right and not overlapping: in each run of the notation's tokens, the widest piece
    that parses, the one ending last first ("row y = 15 (y < 15)" gives "(y < 15)", the words'
    own restatement); a piece ends or starts inside a run only at a bracket, a comma or
    and/or/not ("x > 10 ** 9" holds no condition, not "x > 10")."""
    text = ABS_BARS.sub(r"abs(\1)", text)
    tokens = [(m.start(1), m.end(1), m.group(1)) for m in TOKEN.finditer(text)]
    # a stretch of the notation: tokens back to back (only spaces between), no prose word in it
    words = {"and", "or", "not", *FUNCTIONS, *names}
    found: list[tuple[str, ast.AST]] = []
    i = tries = 0
    while i < len(tokens) and tries < MAX_TRIES:
        j = i
        while (j < len(tokens) and j - i < MAX_RUN and (not tokens[j][2][0].isalpha() or tokens[j][2] in words)
               and (j == i or not text[tokens[j - 1][1]:tokens[j][0]].strip())):
            j += 1
        best = None
        for end in range(j, i, -1):
            if end < j and not _edge(tokens[end][2]):
                continue                        # "x > 10" of "x > 10 ** 9" is not a condition
            for start in range(i, end):
                if start > i and not (_edge(tokens[start - 1][2]) or tokens[start][2] == "("):
                    continue
                piece = text[tokens[start][0]:tokens[end - 1][1]]
                tries += 1
                try:
                    best = (piece, parse(piece, names), end)
                except NotationError:
                    continue
                break
            if best:
                break
        if best:
            found.append(best[:2])
            i = best[2]
        else:
            i = max(j, i + 1)
    return found
