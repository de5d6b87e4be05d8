"""Plain data: what may cross the sandbox boundary (``to_plain``)."""
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ldengine.errors import LDEngineError
from ldengine.sandbox import Limits, PlainDataError, to_plain
from ldengine.sandbox.plain import from_wire, to_wire

SCALARS = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
PLAIN = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=5),
    max_leaves=30)


class Str(str):
    pass


class Int(int):
    pass


class Dict(dict):
    pass


def test_it_is_a_user_error():
    """It raises an LDEngineError subclass, so the CLI shows a message, not a traceback."""
    assert issubclass(PlainDataError, LDEngineError)


@given(PLAIN)
def test_it_returns_an_equal_copy_of_plain_data(value):
    """It returns plain data unchanged in value."""
    assert to_plain(value) == value


def test_it_returns_a_fresh_copy():
    """It copies every container, so mutating the copy leaves the original alone."""
    original = {"cells": [[1, 2], [3, 4]], "size": 5}
    copy = to_plain(original)
    copy["cells"][0].append(9)
    copy["size"] = 0
    assert original == {"cells": [[1, 2], [3, 4]], "size": 5}


def test_it_turns_tuples_into_lists():
    """It returns tuples as lists, nested ones included."""
    assert to_plain(((1, 2), [(3, 4)])) == [[1, 2], [[3, 4]]]


@pytest.mark.parametrize("value", [
    {1, 2}, frozenset({1}), object(), (x for x in []), lambda: 1, math, b"bytes",
    1j, range(3), Str("s"), Int(1), Dict(), [Str("nested")], {"k": Int(2)},
])
def test_it_denies_values_that_are_not_plain(value):
    """It denies sets, objects, generators, callables, modules and subclasses of builtins."""
    with pytest.raises(PlainDataError):
        to_plain(value)


def test_it_names_a_subclass_of_a_builtin():
    """It says when the refused value is a subclass of a builtin type."""
    with pytest.raises(PlainDataError, match="subclass of a builtin"):
        to_plain(Str("looks like a str"))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1.0, math.nan]])
def test_it_denies_non_finite_floats(value):
    """It denies NaN and infinities, which JSON cannot carry and which compare strangely."""
    with pytest.raises(PlainDataError, match="finite"):
        to_plain(value)


@pytest.mark.parametrize("key", [1.5, True, None, (1, 2), Str("k")])
def test_it_denies_dict_keys_other_than_str_and_int(key):
    """It denies dict keys that are not exact str or int."""
    with pytest.raises(PlainDataError, match="key"):
        to_plain({key: 1})


def test_it_denies_deep_nesting():
    """It denies structures nested deeper than max_depth."""
    value = []
    for _ in range(10):
        value = [value]
    assert to_plain(value, Limits(max_depth=11)) == value
    with pytest.raises(PlainDataError, match="deeper"):
        to_plain(value, Limits(max_depth=10))


def test_it_denies_a_self_referencing_list():
    """It denies a list that contains itself (as too deep) instead of looping."""
    value = [1]
    value.append(value)
    with pytest.raises(PlainDataError, match="deeper"):
        to_plain(value)


def test_it_denies_too_many_items():
    """It denies more than max_items items in total."""
    assert len(to_plain([[0] * 50] * 2, Limits(max_items=102))) == 2
    with pytest.raises(PlainDataError, match="items"):
        to_plain([[0] * 50] * 3, Limits(max_items=102))
    with pytest.raises(PlainDataError, match="items"):
        to_plain(list(range(200_000)))


def test_it_denies_long_strings():
    """It denies strings (values and keys) longer than max_str."""
    limits = Limits(max_str=10)
    assert to_plain(["a" * 10], limits) == ["a" * 10]
    with pytest.raises(PlainDataError, match="longer"):
        to_plain(["a" * 11], limits)
    with pytest.raises(PlainDataError):
        to_plain({"k" * 11: 1}, limits)


@given(PLAIN)
def test_it_carries_plain_data_exactly_over_json(value):
    """It keeps int dict keys and every value through the worker's JSON wire format."""
    line = json.dumps(to_wire(to_plain(value)))
    assert json.loads(line, object_hook=from_wire) == value


def test_it_escapes_the_wire_marker_itself():
    """It carries a dict that happens to use the wire marker as a key."""
    value = {"\x00ldengine:pairs": [[1, 2]]}
    assert json.loads(json.dumps(to_wire(value)), object_hook=from_wire) == value


@pytest.mark.parametrize("reply", [b'{"\\u0000ldengine:pairs": [[[1], 2]]}', b'{"\\u0000ldengine:pairs": [[{"a": 1}, 2]]}',
                                   b'{"\\u0000ldengine:pairs": 5}'])
def test_a_crafted_reply_with_unhashable_keys_is_refused(reply):
    """A hostile worker's reply whose key/value pairs hold a key no dict can have is plain-data
    refused (it raised TypeError in the parent)."""
    from ldengine.sandbox.plain import loads
    with pytest.raises(PlainDataError):
        loads(reply)


@pytest.mark.parametrize("value", [10 ** 300, -(10 ** 300), [1, 10 ** 400], {"k": 10 ** 300}, {10 ** 300: 1}])
def test_it_denies_ints_longer_than_the_limit(value):
    """It refuses an int of more than max_int_digits digits (300), wherever it sits."""
    with pytest.raises(PlainDataError, match="more than 300 digits"):
        to_plain(value)


def test_it_allows_ints_up_to_the_limit():
    """It returns ints of up to max_int_digits digits unchanged."""
    assert to_plain([10 ** 300 - 1, -(10 ** 300) + 1]) == [10 ** 300 - 1, -(10 ** 300) + 1]
    assert to_plain(10 ** 20 - 1, Limits(max_int_digits=20)) == 10 ** 20 - 1


@given(PLAIN)
def test_dumps_and_loads_carry_plain_data_exactly(value):
    """It carries plain data through plain.dumps and plain.loads (the worker's replies) exactly."""
    from ldengine.sandbox.plain import dumps, loads
    assert loads(dumps(value).encode()) == to_plain(value)


@pytest.mark.parametrize("text", [b"[NaN]", b"Infinity", b"[1e400]", b"[" * 100 + b"]" * 100, b"{oops", b"1" * 400])
def test_loads_denies_what_plain_data_cannot_be(text):
    """It refuses NaN, infinities, too deep nesting, bad JSON and huge ints from a worker."""
    from ldengine.sandbox.plain import loads
    with pytest.raises(PlainDataError):
        loads(text)
