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
between calls. Print output is collected and discarded.

Not protected here: running time and memory (see ``IsolatedSandbox``).
"""
from __future__ import annotations

import builtins
import importlib
import operator
from typing import Any, Callable, Iterable

from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr_raise,
)
from RestrictedPython.PrintCollector import PrintCollector

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
_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul,
    "/=": operator.itruediv, "//=": operator.ifloordiv, "%=": operator.imod,
    "**=": operator.ipow, "&=": operator.iand, "|=": operator.ior,
    "^=": operator.ixor, "<<=": operator.ilshift, ">>=": operator.irshift,
}


def restricted_builtins(allowed_imports: Iterable[str]) -> dict[str, Any]:
    """A fresh builtins dict: the curated names plus a guarded ``__import__``."""
    names = {name: getattr(builtins, name) for name in _FUNCTIONS + _EXCEPTIONS}
    names["__import__"] = _guarded_import(frozenset(allowed_imports))
    for constant in ("None", "True", "False"):
        names[constant] = getattr(builtins, constant)
    return names


def _guarded_import(allowed: frozenset[str]) -> Callable[..., Any]:
    def guarded_import(name: str, globals: Any = None, locals: Any = None,
                       fromlist: Any = (), level: int = 0) -> Any:
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

    def add(self, value: Any) -> None:
        """Make ``value`` and every container inside it read-only."""
        if type(value) in _MUTABLE_TYPES:
            # Only mutable containers: an immutable tuple (the empty one is a
            # singleton) must not make every equal tuple read-only.
            self.ids.add(id(value))
        if type(value) in _MUTABLE_TYPES or type(value) is tuple:
            for item in value.values() if type(value) is dict else value:
                self.add(item)

    def check(self, ob: Any) -> None:
        if id(ob) in self.ids:
            raise TypeError("module constants are read-only")


def guards(read_only: _ReadOnly) -> dict[str, Any]:
    """The ``_name_`` functions RestrictedPython-compiled code calls."""

    def getattr_(ob: Any, name: str) -> Any:
        if name in _MUTATORS:
            read_only.check(ob)
            if ob is list or ob is dict or ob is set:  # list.append(CONST, x)
                raise TypeError(f"unbound {ob.__name__}.{name} is not allowed")
        return safer_getattr_raise(ob, name)

    def write_(ob: Any) -> Any:
        read_only.check(ob)
        return full_write_guard(ob)

    def inplacevar_(op: str, x: Any, y: Any) -> Any:
        if op not in _INPLACE:
            raise TypeError(f"{op} is not allowed in the sandbox")
        read_only.check(x)
        return _INPLACE[op](x, y)

    return {
        "_getattr_": getattr_, "_write_": write_, "_inplacevar_": inplacevar_,
        "_getitem_": operator.getitem, "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_apply_": _apply, "_print_": PrintCollector,
    }


def _apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


def load(code: Any, module_name: str, allowed_imports: Iterable[str],
         constant_names: Iterable[str]) -> dict[str, Any]:
    """Execute restricted ``code`` in a fresh namespace; return the namespace.

    ``code`` must come from ``compile_restricted``: plain ``compile()`` would
    skip every guard.
    """
    read_only = _ReadOnly()
    namespace: dict[str, Any] = {
        "__builtins__": restricted_builtins(allowed_imports),
        "__name__": module_name,
        **guards(read_only),
    }
    exec(code, namespace)
    for name in constant_names:
        read_only.add(namespace[name])
    return namespace
