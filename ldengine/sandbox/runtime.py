"""The guarded runtime: restricted builtins and the guards RestrictedPython calls.

Code compiled by ``compile_restricted`` turns attribute reads into
``_getattr_(ob, name)``, writes into ``_write_(ob).name = ...``, iteration into
``_getiter_(ob)``, ``x += y`` into ``_inplacevar_('+=', x, y)`` and so on; this
module supplies those names and a curated set of builtins.

Denied on purpose: ``type``, ``id``, ``getattr``/``setattr``, ``vars``, ``dir``,
``globals``/``locals``, ``open``, ``eval``/``exec``/``compile``, ``format``,
``exit``/``quit``, ``input``, ``breakpoint``, ``__build_class__``, and every
``BaseException`` that is not an ``Exception``. ``__import__`` admits only the
module's allowed imports. Attribute names starting with ``_``, frame and
generator internals, and ``str.format``-style attribute walking are refused by
``safer_getattr``. Module constants are read-only: a module keeps no state
between calls. Print output is collected (at most ``MAX_PRINTED`` characters)
and discarded.

Size guards: ``GuardedTransformer`` (the compile policy) routes ``a * b``,
``a ** b`` and ``a << b`` through ``_mul_``, ``_pow_`` and ``_lshift_``, and
the builtin ``pow`` and the in-place forms go through the same checks: an
int result beyond ``MAX_INT_BITS`` bits or a repeated sequence beyond
``MAX_REPEAT`` items is refused *before* it is computed, so ``10 ** 10 ** 8``
and ``[0] * 10 ** 10`` fail at once instead of running for minutes or
filling memory inside C. ``int(text)`` is bounded by CPython's own limit
(4,300 digits).

Not protected here: running time and memory in general (a loop that grows a
dict, ``math.factorial(10 ** 8)``, ``sum(range(10 ** 12))``); see
``Sandbox`` for its CPU-time alarm and ``IsolatedSandbox`` for real limits.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import operator
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, cast

from RestrictedPython import RestrictingNodeTransformer
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr_raise,
)
from RestrictedPython.PrintCollector import PrintCollector

if TYPE_CHECKING:
    import types
    from collections.abc import Mapping, Sequence, Sized

_FUNCTIONS = (
    "abs", "all", "any", "bin", "bool", "chr", "dict", "divmod", "enumerate",
    "filter", "float", "frozenset", "hex", "int", "isinstance", "iter", "len",
    "list", "map", "max", "min", "next", "oct", "ord", "pow", "range", "reversed",
    "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
)
# ``range`` is the builtin (lazy, O(1) memory) rather than RestrictedPython's
# 1000-element ``limited_range``: a cap on range does not stop ``[0] * 10**10``,
# so it buys no safety in-process, and the isolated worker has real limits.
_EXCEPTIONS = (
    "ArithmeticError", "AssertionError", "AttributeError", "Exception",
    "IndexError", "KeyError", "LookupError", "NotImplementedError",
    "OverflowError", "RecursionError", "RuntimeError", "StopIteration",
    "TypeError", "ValueError", "ZeroDivisionError",
)
# print/printed are rewritten by RestrictedPython into a PrintCollector.
PROVIDED_NAMES = frozenset(_FUNCTIONS + _EXCEPTIONS + ("print", "printed"))

_MUTATORS = frozenset({
    "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse",
    "update", "setdefault", "popitem", "add", "discard", "intersection_update",
    "difference_update", "symmetric_difference_update",
})
_MUTABLE_TYPES = (list, dict, set)
MAX_INT_BITS = 100_000  # ~30,000 digits: computed in microseconds, yet no runaway growth
MAX_REPEAT = 10_000_000  # items (or characters) one ``*`` may build
MAX_PRINTED = 10_000  # characters of print output kept per call


def _check_mul(a: object, b: object) -> None:
    if type(a) is float or type(b) is float:
        return
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > MAX_INT_BITS:
            raise OverflowError(f"int product of more than {MAX_INT_BITS} bits refused by the sandbox")
    elif isinstance(b, int) and type(a) in _SEQUENCES:
        _check_repeat(len(cast("Sized", a)), b)
    elif isinstance(a, int) and type(b) in _SEQUENCES:
        _check_repeat(len(cast("Sized", b)), a)


def _check_repeat(length: int, times: int) -> None:
    if length and times > MAX_REPEAT // length:
        raise MemoryError(f"a sequence of {length} repeated {times} times: more than "
                          f"{MAX_REPEAT} items, refused by the sandbox")


def _check_pow(a: object, b: object) -> None:
    if isinstance(a, int) and isinstance(b, int) and b > 1 and not -1 <= a <= 1:
        if (a.bit_length() - 1) * b > MAX_INT_BITS:
            raise OverflowError(f"int power of more than {MAX_INT_BITS} bits refused by the sandbox")


def _check_lshift(a: object, b: object) -> None:
    if isinstance(a, int) and isinstance(b, int) and a and b > 0 and a.bit_length() + b > MAX_INT_BITS:
        raise OverflowError(f"int shift to more than {MAX_INT_BITS} bits refused by the sandbox")


def guarded_mul(a: Any, b: Any) -> object:
    """``a * b``, refused when it would build a huge int or sequence."""
    _check_mul(a, b)
    return a * b


def guarded_pow(a: Any, b: Any, mod: object = None) -> object:
    """``a ** b`` (or ``pow(a, b, mod)``), refused when it would build a huge int."""
    if mod is None:
        _check_pow(a, b)
        return a ** b
    return pow(a, b, mod)  # bounded by ``mod``


def guarded_lshift(a: Any, b: Any) -> object:
    """``a << b``, refused when it would build a huge int."""
    _check_lshift(a, b)
    return a << b


def _checked(check: Callable[[object, object], None],
             op: Callable[[object, object], object]) -> Callable[[object, object], object]:
    def inplace(x: object, y: object) -> object:
        check(x, y)
        return op(x, y)
    return inplace


_SEQUENCES = (str, list, tuple)
_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": _checked(_check_mul, operator.imul),
    "/=": operator.itruediv, "//=": operator.ifloordiv, "%=": operator.imod,
    "**=": _checked(_check_pow, operator.ipow), "&=": operator.iand, "|=": operator.ior,
    "^=": operator.ixor, "<<=": _checked(_check_lshift, operator.ilshift), ">>=": operator.irshift,
}
_BINOP_GUARDS = {ast.Mult: "_mul_", ast.Pow: "_pow_", ast.LShift: "_lshift_"}


def _leaves(statements: list[ast.stmt], in_loop: bool = False) -> ast.stmt | None:
    """The first ``return``, or ``break``/``continue`` of no loop inside ``statements``, that
    would leave them (a ``finally`` that leaves discards the exception in flight)."""
    for stmt in statements:
        if isinstance(stmt, ast.Return) or (isinstance(stmt, (ast.Break, ast.Continue)) and not in_loop):
            return stmt
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        loop = in_loop or isinstance(stmt, (ast.For, ast.AsyncFor, ast.While))
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(stmt, field, None)
            if inner:
                found = _leaves([h for h in inner if isinstance(h, ast.stmt)] +
                                [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body],
                                loop and field != "orelse")
                if found is not None:
                    return found
    return None


def _own_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of ``function``'s body, not those of the functions and lambdas it defines."""
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


class GuardedTransformer(RestrictingNodeTransformer):
    """RestrictedPython's policy, plus ``*``, ``**`` and ``<<`` as calls of the size guards,
    no ``finally`` that leaves by ``return``/``break``/``continue`` (it would swallow the
    time limit's exception in flight), and no ``finally`` in a generator (it runs when the
    generator is dropped or collected, after the call and outside its time limit)."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST | Iterable[ast.AST] | None:
        own = list(_own_nodes(node))
        if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in own):
            for n in own:
                if isinstance(n, ast.Try) and n.finalbody:
                    self.error(n.finalbody[0], "a finally block in a generator is not allowed (it would run "
                                               "after the call, outside the time limit)")
        return super().visit_FunctionDef(node)

    def visit_Try(self, node: ast.Try) -> ast.AST | Iterable[ast.AST] | None:
        leaving = _leaves(node.finalbody)
        if leaving is not None:
            self.error(leaving, f"a '{type(leaving).__name__.lower()}' that leaves a finally block is not "
                                "allowed (it would swallow the time limit)")
        return super().visit_Try(node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.node_contents_visit(node)
        guard = _BINOP_GUARDS.get(type(node.op))
        if guard is None:
            return node
        name = ast.copy_location(ast.Name(id=guard, ctx=ast.Load()), node)
        return ast.copy_location(ast.Call(func=name, args=[node.left, node.right], keywords=[]), node)


class BoundedPrintCollector(PrintCollector):
    """A ``PrintCollector`` that keeps at most ``MAX_PRINTED`` characters (a print bomb costs nothing)."""

    def __init__(self, _getattr_: Callable[[object, str], object] | None = None) -> None:
        super().__init__(_getattr_)
        self.room = MAX_PRINTED

    def write(self, text: str) -> None:
        if self.room > 0:
            text = str(text)[: self.room]
            self.room -= len(text)
            self.txt.append(text)


def restricted_builtins(allowed_imports: Iterable[str]) -> dict[str, object]:
    """A fresh builtins dict: the curated names plus a guarded ``__import__``."""
    names = {name: getattr(builtins, name) for name in _FUNCTIONS + _EXCEPTIONS}
    names["pow"] = guarded_pow
    names["__import__"] = _guarded_import(frozenset(allowed_imports))
    for constant in ("None", "True", "False"):
        names[constant] = getattr(builtins, constant)
    return names


def _guarded_import(allowed: frozenset[str]) -> Callable[..., types.ModuleType]:
    def guarded_import(name: str, globals: Mapping[str, object] | None = None,
                       locals: Mapping[str, object] | None = None,
                       fromlist: Sequence[str] | None = (), level: int = 0) -> types.ModuleType:
        if level != 0 or name not in allowed:
            raise ImportError(f"import of {name!r} is not allowed in the sandbox")
        return importlib.import_module(name)
    return guarded_import


class _ReadOnly:
    """The ids of a module's constants, which called code may read but not change.

    The constants stay referenced by the module namespace, so their ids stay
    unique for the namespace's lifetime.
    """

    def __init__(self) -> None:
        self.ids: set[int] = set()

    def add(self, value: object) -> None:
        """Make ``value`` and every container inside it read-only."""
        if type(value) in _MUTABLE_TYPES:
            # Only mutable containers: an immutable tuple (the empty one is a
            # singleton) must not make every equal tuple read-only.
            self.ids.add(id(value))
        if type(value) in _MUTABLE_TYPES or type(value) is tuple:
            for item in value.values() if type(value) is dict else cast("Iterable[object]", value):
                self.add(item)

    def check(self, ob: object) -> None:
        if id(ob) in self.ids:
            raise TypeError("module constants are read-only")


def guards(read_only: _ReadOnly) -> dict[str, object]:
    """The ``_name_`` functions RestrictedPython-compiled code calls."""

    def getattr_(ob: object, name: str) -> object:
        if name in _MUTATORS:
            read_only.check(ob)
            if ob is list or ob is dict or ob is set:  # list.append(CONST, x)
                raise TypeError(f"unbound {cast(type, ob).__name__}.{name} is not allowed")
        return safer_getattr_raise(ob, name)

    def write_(ob: object) -> object:
        read_only.check(ob)
        return full_write_guard(ob)

    def inplacevar_(op: str, x: object, y: object) -> object:
        if op not in _INPLACE:
            raise TypeError(f"{op} is not allowed in the sandbox")
        read_only.check(x)
        return _INPLACE[op](x, y)

    return {
        "_getattr_": getattr_, "_write_": write_, "_inplacevar_": inplacevar_,
        "_getitem_": operator.getitem, "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_apply_": _apply, "_print_": BoundedPrintCollector,
        "_mul_": guarded_mul, "_pow_": guarded_pow, "_lshift_": guarded_lshift,
    }


def _apply(function: Callable[..., object], *args: object, **kwargs: object) -> object:
    return function(*args, **kwargs)


def load(code: types.CodeType, module_name: str, allowed_imports: Iterable[str],
         constant_names: Iterable[str]) -> dict[str, object]:
    """Execute restricted ``code`` in a fresh namespace; return the namespace.

    ``code`` must come from ``compile_restricted``: plain ``compile()`` would
    skip every guard.
    """
    read_only = _ReadOnly()
    namespace: dict[str, object] = {
        "__builtins__": restricted_builtins(allowed_imports),
        "__name__": module_name,
        **guards(read_only),
    }
    exec(code, namespace)
    for name in constant_names:
        read_only.add(namespace[name])
    return namespace
