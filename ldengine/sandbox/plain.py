"""Plain data: the only values that cross the sandbox boundary.

Plain data is exact ``int``, finite ``float``, ``bool``, ``str``, ``None``,
``list`` and ``dict`` (keys exact ``str`` or ``int``); tuples are accepted and
become lists. Everything else is refused: sets, user objects, generators,
callables, and *subclasses* of the builtins, whose ``__eq__``, ``__hash__`` or
``__lt__`` could lie to the host or hang it later. Size and depth are bounded.

``to_plain`` both copies inputs (a fresh copy per call, so called code cannot
mutate the caller's objects) and checks outputs. It tests exact types with
``type(x) is ...`` and never calls a method of the value it inspects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ldengine.errors import LDEngineError

# Values copied by reference: immutable, and nothing about them to check.
_ATOMS = frozenset({int, bool, type(None)})
# A dict whose keys JSON cannot carry as object keys travels as key/value pairs.
_PAIRS = "\x00ldengine:pairs"


class PlainDataError(LDEngineError):
    """A value is not plain data, or is too deep, too large or too long."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one sandboxed call.

    ``wall_s``, ``cpu_s`` and ``memory_mb`` are enforced only by
    ``IsolatedSandbox`` (``memory_mb`` is address space on top of the worker's
    baseline); the data bounds apply to inputs and outputs in both modes.
    """

    wall_s: float = 2.0
    cpu_s: float = 2.0
    memory_mb: int = 256
    max_depth: int = 32
    max_items: int = 100_000
    max_str: int = 100_000

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"Limits.{name} must be positive, not {value!r}")


DEFAULT_LIMITS = Limits()


def to_plain(value: Any, limits: Limits = DEFAULT_LIMITS) -> Any:
    """A fresh plain-data copy of ``value``; raise ``PlainDataError`` if it is not plain."""
    if type(value) in _ATOMS:
        return value
    # budget: [items left, the limits]; a list so the recursion can spend it
    return _copy(value, limits.max_depth, [limits.max_items, limits])


def _copy(v: Any, depth: int, budget: list) -> Any:
    # Hot path (every sandboxed call, both ways): module-level function, no
    # closures, exact type tests first, and containers of atoms copied in C.
    t = type(v)
    if t is list or t is tuple:
        _spend(v, depth, budget)
        for x in v:
            if type(x) not in _ATOMS:
                return [x if type(x) in _ATOMS else _copy(x, depth - 1, budget) for x in v]
        return list(v)
    if t is str:
        if len(v) > budget[1].max_str:
            raise PlainDataError(f"a string longer than {budget[1].max_str} characters")
        return v
    if t in _ATOMS:
        return v
    if t is float:
        if not math.isfinite(v):
            raise PlainDataError(f"{v!r} is not a finite float")
        return v
    if t is dict:
        _spend(v, depth, budget)
        return {_key(k, budget): _copy(x, depth - 1, budget) for k, x in v.items()}
    raise PlainDataError(_refusal(t))


def _spend(container: list | tuple | dict, depth: int, budget: list) -> None:
    if depth <= 0:
        raise PlainDataError(f"nested deeper than {budget[1].max_depth} levels")
    budget[0] -= len(container)
    if budget[0] < 0:
        raise PlainDataError(f"more than {budget[1].max_items} items")


def _key(k: Any, budget: list) -> str | int:
    if type(k) is int or (type(k) is str and len(k) <= budget[1].max_str):
        return k
    raise PlainDataError(f"a dict key of type {type(k).__name__} (keys must be str or int)")


def _refusal(t: type) -> str:
    name = getattr(t, "__qualname__", "?")
    if issubclass(t, (int, float, str, list, tuple, dict)):
        return f"{name} is a subclass of a builtin type, which is not plain data"
    return f"{name} is not plain data (int, float, bool, str, None, list, dict)"


def to_wire(value: Any) -> Any:
    """``value`` (already plain) in a form JSON carries exactly.

    JSON object keys are strings, so a dict with an ``int`` key (or with the
    marker key itself) is sent as ``{marker: [[key, value], ...]}``.
    """
    t = type(value)
    if t is list:
        return [to_wire(x) for x in value]
    if t is dict:
        if _PAIRS in value or any(type(k) is not str for k in value):
            return {_PAIRS: [[k, to_wire(x)] for k, x in value.items()]}
        return {k: to_wire(x) for k, x in value.items()}
    return value


def from_wire(obj: dict) -> Any:
    """``json.loads`` object hook undoing ``to_wire``'s key/value pairs."""
    if len(obj) == 1 and _PAIRS in obj:
        pairs = obj[_PAIRS]
        if type(pairs) is not list or not all(type(p) is list and len(p) == 2 for p in pairs):
            raise PlainDataError("malformed key/value pairs on the wire")
        return {k: v for k, v in pairs}
    return obj
