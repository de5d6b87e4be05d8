"""The in-process Sandbox: results, copied inputs, checked outputs, auditing."""
import pytest

import ldengine.sandbox
from ldengine.sandbox import Limits, Sandbox, SandboxResult, compile_function, compile_module

MODULE = compile_module('''
import math


def add(a, b):
    return a + b


def mutate(state):
    state["cells"].append([9, 9])
    state["size"] = 0
    return state["size"]


def divide(a, b):
    return a / b


def recurse(n):
    return recurse(n + 1)


def a_set():
    return {1, 2}


def a_generator():
    return (i for i in range(3))


def a_lambda():
    return lambda: 1


def a_module():
    return math


def a_range():
    return range(3)


def deep():
    value = []
    for i in range(100):
        value = [value]
    return value


def huge():
    return [0] * 200000


def long_string():
    return "x" * 1000


def keys():
    return {1: "one", "two": 2, "t": (1, 2)}


def nan():
    return float("nan")
''', "test_module.py")


@pytest.fixture()
def sandbox():
    return Sandbox(Limits(max_str=500))


def test_it_returns_value_duration_and_hash(sandbox):
    """It returns the value, the duration and the function's source hash."""
    result = sandbox.call(MODULE, "add", 2, 3)
    assert isinstance(result, SandboxResult)
    assert result.ok and result.value == 5 and result.error is None and result.error_type is None
    assert 0 < result.duration < 1
    assert result.function == "add" and result.source_hash == MODULE.function_hash("add")


def test_it_returns_plain_data_with_int_keys_and_tuples_as_lists(sandbox):
    """It returns dicts with int keys and turns tuples into lists."""
    assert sandbox.call(MODULE, "keys").value == {1: "one", "two": 2, "t": [1, 2]}


def test_it_copies_inputs(sandbox):
    """It passes a fresh copy, so a function mutating its input leaves the caller's object alone."""
    state = {"cells": [[1, 2]], "size": 5}
    assert sandbox.call(MODULE, "mutate", state).value == 0
    assert state == {"cells": [[1, 2]], "size": 5}


def test_it_returns_an_exception_as_a_result(sandbox):
    """It returns "ZeroDivisionError: ..." as a result instead of raising."""
    result = sandbox.call(MODULE, "divide", 1, 0)
    assert not result.ok and result.value is None
    assert result.error_type == "ZeroDivisionError"
    assert result.error == "ZeroDivisionError: division by zero"


def test_it_returns_recursion_error_as_a_result(sandbox):
    """It catches unbounded recursion as a RecursionError result."""
    result = sandbox.call(MODULE, "recurse", 0)
    assert result.error_type == "RecursionError"
    assert sandbox.call(MODULE, "add", 1, 1).value == 2


@pytest.mark.parametrize("name, message", [
    ("a_set", "set is not plain data"),
    ("a_generator", "generator is not plain data"),
    ("a_lambda", "function is not plain data"),
    ("a_module", "module is not plain data"),
    ("a_range", "range is not plain data"),
    ("deep", "nested deeper"),
    ("huge", "more than 100000 items"),
    ("long_string", "longer than 500"),
    ("nan", "not a finite float"),
])
def test_it_denies_return_values_that_are_not_plain(sandbox, name, message):
    """It reports BadReturnValue for sets, generators, callables, modules, deep, huge or non-finite data."""
    result = sandbox.call(MODULE, name)
    assert result.error_type == "BadReturnValue" and message in result.error


def test_it_denies_arguments_that_are_not_plain(sandbox):
    """It reports BadArgument, without calling the function, for a non-plain argument."""
    result = sandbox.call(MODULE, "add", {1}, {2})
    assert result.error_type == "BadArgument" and "set" in result.error


def test_it_reports_an_unknown_function(sandbox):
    """It reports NotFound for a name the module does not define."""
    result = sandbox.call(MODULE, "missing")
    assert result.error_type == "NotFound" and "missing" in result.error
    assert result.source_hash == MODULE.source_hash


def test_it_reports_a_function_that_fails_to_load(sandbox):
    """It reports CompileError when untrusted code fails while loading."""
    module = compile_function("import no_such_module\n\ndef f(x):\n    return x\n",
                              allowed_imports=("no_such_module",))
    result = sandbox.call(module, "f", 1)
    assert result.error_type == "CompileError" and "ModuleNotFoundError" in result.error


def test_it_truncates_long_error_messages(sandbox):
    """It truncates error messages to about 300 characters."""
    module = compile_module("def f():\n    raise ValueError('x' * 5000)\n")
    result = sandbox.call(module, "f")
    assert result.error.startswith("ValueError: xxx") and len(result.error) <= 300


def test_it_audits_every_call():
    """It passes every result, successes and failures, to the audit callback."""
    seen = []
    sandbox = Sandbox(audit=seen.append)
    results = [sandbox.call(MODULE, "add", 1, 2), sandbox.call(MODULE, "divide", 1, 0),
               sandbox.call(MODULE, "missing")]
    assert seen == results
    assert (sandbox.calls, sandbox.errors) == (3, 2)


def test_it_leaves_host_state_unchanged(sandbox):
    """It leaves the caller's data and ldengine's module globals as they were."""
    before = dict(vars(ldengine.sandbox))
    state = {"cells": [[1, 2]], "size": 5}
    for name, args in [("mutate", (state,)), ("divide", (state, 0)), ("recurse", (0,)), ("a_set", ())]:
        sandbox.call(MODULE, name, *args)
    assert state == {"cells": [[1, 2]], "size": 5}
    assert dict(vars(ldengine.sandbox)) == before


def test_it_runs_the_same_compiled_module_many_times(sandbox):
    """It compiles once and reuses the loaded module for every call."""
    assert [sandbox.call(MODULE, "add", i, i).value for i in range(100)] == [2 * i for i in range(100)]
