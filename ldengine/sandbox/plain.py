"""Plain data: the only values that cross the sandbox boundary.

Plain data is exact ``int``, finite ``float``, ``bool``, ``str``, ``None``,
``list`` and ``dict`` (keys exact ``str`` or ``int``); tuples are accepted and
become lists. Everything else is refused: sets, user objects, generators,
callables, and *subclasses* of the builtins, whose ``__eq__``, ``__hash__`` or
``__lt__`` could lie to the host or hang it later. Size and depth are bounded,
and so are ints (``Limits.max_int_digits``): a 5,000-digit int is valid Python
but breaks the host's ``repr``/``str`` (CPython refuses to print more than 4,300
digits) and costs quadratic time wherever it is printed.

``to_plain`` both copies inputs (a fresh copy per call, so called code cannot
mutate the caller's objects) and checks outputs. It tests exact types with
``type(x) is ...`` and never calls a method of the value it inspects.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias, Union, cast, overload

from ldengine.errors import LDEngineError

# Values copied by reference: immutable, and nothing about them to check
# (an exact int is immutable too, but its size is checked).
_ATOMS = frozenset({bool, type(None)})
# A dict whose keys JSON cannot carry as object keys travels as key/value pairs.
_PAIRS = "\x00ldengine:pairs"
_PAIRS_JSON = json.dumps(_PAIRS)[1:-1].encode()  # how the marker looks on the wire


# Plain data as a type: what ``to_plain`` returns and what crosses the boundary.
Plain: TypeAlias = Union[None, bool, int, float, str, "list[Plain]", "dict[str | int, Plain]"]


class LimitsError(LDEngineError, ValueError):
    """Bounds that cannot be enforced: zero, negative, not a number, or above the ceiling
    (a memory cap of 10**12 MB would be no cap at all)."""


# The largest bounds a call may ask for: an hour of time, 64 GiB of memory.
LIMIT_CEILINGS = {"wall_s": 3600, "cpu_s": 3600, "memory_mb": 65_536}


class PlainDataError(LDEngineError):
    """A value is not plain data, or is too deep, too large or too long."""


@dataclass(frozen=True)
class Limits:
    """Bounds on one sandboxed call.

    ``wall_s`` and ``memory_mb`` are enforced only by ``IsolatedSandbox``
    (``memory_mb`` is address space on top of the worker's baseline);
    ``cpu_s`` by both (in-process as an alarm that Python loops hear and C
    code does not); the data bounds, ``max_int_digits`` included, apply to
    inputs and outputs in both modes.
    """

    wall_s: float = 2.0
    cpu_s: float = 2.0
    memory_mb: int = 256
    max_depth: int = 32
    max_items: int = 100_000
    max_str: int = 100_000
    max_int_digits: int = 300

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            top = LIMIT_CEILINGS.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= (top or math.inf):
                raise LimitsError(f"Limits.{name} must be a number above 0"
                                  f"{f' and at most {top:,}' if top else ''}, not {value!r}")


DEFAULT_LIMITS = Limits()


@overload
def to_plain(value: tuple[object, ...], limits: Limits = DEFAULT_LIMITS) -> list[Plain]: ...
@overload
def to_plain(value: object, limits: Limits = DEFAULT_LIMITS) -> Plain: ...
def to_plain(value: Any, limits: Limits = DEFAULT_LIMITS) -> Plain:
    """A fresh plain-data copy of ``value``; raise ``PlainDataError`` if it is not plain."""
    if type(value) in _ATOMS:
        return value
    return _copy(value, limits.max_depth, _budget(limits))


def _budget(limits: Limits) -> list:
    # [items left, the limits, the int bound, whether to_wire is needed]; a
    # list so the recursion can spend and mark it
    return [limits.max_items, limits, _int_bound(limits.max_int_digits), False]


@functools.lru_cache(maxsize=8)
def _int_bound(digits: int) -> int:
    return 10 ** digits


def _copy(v: Any, depth: int, budget: list) -> Plain:
    # Hot path (every sandboxed call, both ways): module-level function, no
    # closures, exact type tests first, and containers of atoms copied in C.
    t = type(v)
    if t is list or t is tuple:
        _spend(v, depth, budget)
        bound = budget[2]
        for x in v:
            tx = type(x)
            if tx is int:
                if -bound < x < bound:
                    continue
            elif tx in _ATOMS:
                continue
            return [x if type(x) in _ATOMS else _copy(x, depth - 1, budget) for x in v]
        return list(v)
    if t is int:
        if -budget[2] < v < budget[2]:
            return v
        raise PlainDataError(f"an int with more than {budget[1].max_int_digits} digits")
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


def _key(k: object, budget: list) -> str | int:
    if type(k) is str and len(k) <= budget[1].max_str:
        if k == _PAIRS:
            budget[3] = True
        return k
    if type(k) is int:
        budget[3] = True  # JSON object keys are strings: the dict travels as pairs
        return cast(int, _copy(k, 0, budget))    # an int copies to itself
    if type(k) is str:
        raise PlainDataError(f"a string longer than {budget[1].max_str} characters")
    raise PlainDataError(f"a dict key of type {type(k).__name__} (keys must be str or int)")


def _refusal(t: type) -> str:
    name = getattr(t, "__qualname__", "?")
    if issubclass(t, (int, float, str, list, tuple, dict)):
        return f"{name} is a subclass of a builtin type, which is not plain data"
    return f"{name} is not plain data (int, float, bool, str, None, list, dict)"


def to_wire(value: Any) -> Plain:
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


def dumps(value: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """JSON text of a plain-data copy of ``value``; raise ``PlainDataError`` if it is not plain.

    ``to_plain`` and ``to_wire`` in one step; the copy is walked a second time
    only when a dict has a key JSON cannot carry.
    """
    budget = _budget(limits)
    copied = value if type(value) in _ATOMS else _copy(value, limits.max_depth, budget)
    return json.dumps(to_wire(copied) if budget[3] else copied, separators=(",", ":"), allow_nan=False)


def loads(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Plain:
    """Plain data from JSON written by ``dumps``, checked by ``to_plain`` (for untrusted bytes).

    JSON can only build plain types; what is checked is size, depth, int size
    and finiteness (``NaN`` and ``Infinity`` are refused while parsing).
    Raises ``PlainDataError``.
    """
    hook = from_wire if _PAIRS_JSON in data else None
    try:
        value = json.loads(data, object_hook=hook, parse_constant=_refuse_constant)
    except PlainDataError:
        raise
    except (ValueError, RecursionError, MemoryError) as exc:
        raise PlainDataError(f"undecodable JSON ({type(exc).__name__}: {str(exc)[:100]})") from None
    return to_plain(value, limits)


def _refuse_constant(name: str) -> NoReturn:
    raise PlainDataError(f"{name} is not a finite float")


def from_wire(obj: dict) -> dict:
    """``json.loads`` object hook undoing ``to_wire``'s key/value pairs."""
    if len(obj) == 1 and _PAIRS in obj:
        pairs = obj[_PAIRS]
        if type(pairs) is not list or not all(type(p) is list and len(p) == 2 for p in pairs):
            raise PlainDataError("malformed key/value pairs on the wire")
        try:
            return {k: v for k, v in pairs}
        except TypeError:           # a key that cannot be one (a list, a dict): a crafted reply
            raise PlainDataError("a key on the wire that cannot be a dict key") from None
    return obj
