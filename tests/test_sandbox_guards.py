"""The guarded runtime: restricted builtins, read-only constants, collected prints."""
import builtins

import pytest

from ldengine.sandbox import Sandbox, compile_module
from ldengine.sandbox.runtime import restricted_builtins

CONSTANTS = '''
GRID = [[0, 1], [1, 0]]
TABLE = {"a": [1, 2]}
SEEN = {1, 2}
PAIR = ([1], 2)
EMPTY = ()


def grid():
    return GRID


def table():
    return TABLE
'''


@pytest.fixture()
def sandbox():
    return Sandbox()


def test_it_denies_builtins_outside_the_curated_set():
    """It provides no introspection, I/O, code execution or process control builtins."""
    provided = restricted_builtins(("math",))
    for name in ("type", "id", "getattr", "setattr", "vars", "dir", "globals", "locals",
                 "open", "eval", "exec", "compile", "format", "exit", "quit", "input",
                 "breakpoint", "__build_class__", "object", "memoryview"):
        assert name not in provided, name


def test_it_denies_base_exceptions_that_are_not_exceptions():
    """It provides only Exception subclasses, so called code cannot raise SystemExit and the like."""
    classes = [v for v in restricted_builtins(()).values() if isinstance(v, type)
               and issubclass(v, BaseException)]
    assert classes and all(issubclass(c, Exception) for c in classes)


def test_it_returns_a_fresh_builtins_dict_per_module():
    """It gives each module its own builtins dict, never the host's."""
    assert restricted_builtins(()) is not restricted_builtins(())
    assert restricted_builtins(()) is not vars(builtins)


@pytest.mark.parametrize("statement", [
    "GRID.append([2])",
    "GRID[0].append(2)",
    "GRID[0] = [9]",
    "del GRID[0]",
    "TABLE['b'] = 1",
    "TABLE.update(b=1)",
    "TABLE['a'].sort(reverse=True)",
    "SEEN.add(3)",
    "PAIR[0].append(3)",
    "list.append(GRID, 1)",
    "alias = GRID\n    alias += [[3]]",
])
def test_it_denies_changing_module_constants(sandbox, statement):
    """It denies every way of mutating a module constant, so a module keeps no state between calls."""
    module = compile_module(CONSTANTS + f"\n\ndef mutate():\n    {statement}\n")
    result = sandbox.call(module, "mutate")
    assert result.error_type == "TypeError", result
    assert sandbox.call(module, "grid").value == [[0, 1], [1, 0]]
    assert sandbox.call(module, "table").value == {"a": [1, 2]}


def test_it_returns_a_copy_of_a_constant(sandbox):
    """It returns constants as copies, so the caller cannot change them either."""
    module = compile_module(CONSTANTS)
    sandbox.call(module, "grid").value.append("caller's change")
    assert sandbox.call(module, "grid").value == [[0, 1], [1, 0]]


def test_it_allows_mutating_local_data(sandbox):
    """It lets functions build and change their own lists, dicts and sets."""
    source = ('def f(cells):\n    out = []\n    seen = set()\n    for x, y in cells:\n'
              '        out.append([x + 1, y])\n        seen.add(x)\n    out += [[0, 0]]\n'
              '    out[0] = [len(seen), 0]\n    total = 0\n    total += 2\n    total *= 3\n'
              '    d = {}\n    d["t"] = total\n    d.update(k=1)\n    del out[-1]\n'
              '    acc = ()\n    acc += (1,)\n    return [out, d]\n')
    result = sandbox.call(compile_module(CONSTANTS + "\n\n" + source), "f", [(1, 2), (3, 4)])
    assert result.value == [[[2, 0], [4, 4]], {"t": 6, "k": 1}]


def test_it_supports_unpacking_comprehensions_and_math(sandbox):
    """It runs ordinary pure code: nested unpacking, comprehensions, slices, math, sorted with keys."""
    source = ('import math\n\ndef f(pairs):\n    a, (b, c) = 1, (2, 3)\n'
              '    ranked = sorted(pairs, key=lambda p: (-p[1], p[0]))\n'
              '    return [a + b + c, [p[0] for p in ranked][:2], math.floor(math.sqrt(17)),\n'
              '            sum(x * y for x, y in pairs), "%d-%s" % (1, "a"), max(*pairs[0])]\n')
    result = sandbox.call(compile_module(source), "f", [[1, 5], [2, 7], [3, 5]])
    assert result.value == [6, [2, 1], 4, 34, "1-a", 5]


def test_it_collects_prints_instead_of_writing_them(sandbox, capsys):
    """It discards print output: called code cannot write to the host's stdout."""
    module = compile_module("def f(x):\n    print('secret', x)\n    return x\n")
    assert sandbox.call(module, "f", 1).value == 1
    assert capsys.readouterr().out == ""


def test_it_denies_unknown_in_place_operators():
    """It denies in-place operators outside the arithmetic and bitwise set."""
    from ldengine.sandbox.runtime import _ReadOnly, guards
    inplacevar = guards(_ReadOnly())["_inplacevar_"]
    assert inplacevar("+=", [1], [2]) == [1, 2]
    with pytest.raises(TypeError):
        inplacevar("@=", 1, 2)


@pytest.mark.parametrize("body, error", [
    ("return 10 ** 10 ** 8", "OverflowError"),
    ("return pow(7, 10 ** 9)", "OverflowError"),
    ("return 1 << 10 ** 9", "OverflowError"),
    ("x = 3\n    x **= 10 ** 8\n    return x", "OverflowError"),
    ("x = 2 ** 60000\n    return x * x * x", "OverflowError"),
    ("return 'ab' * 10 ** 8", "MemoryError"),
    ("x = [0]\n    x *= 10 ** 8\n    return x", "MemoryError"),
])
def test_it_denies_huge_results_before_computing_them(sandbox, body, error):
    """It refuses *, **, << and pow (in-place forms too) that would build a huge int or sequence."""
    result = sandbox.call(compile_module(f"def f():\n    {body}\n"), "f")
    assert result.error_type == error and "refused by the sandbox" in result.error


def test_it_allows_ordinary_arithmetic(sandbox):
    """It computes ordinary *, **, << and pow exactly as Python does."""
    body = "return [x * 3, 'ab' * 2, [0] * 3, 2 ** 100, 2.5 ** 2, -2 ** 2, pow(3, 4), pow(3, 200, 7), 1 << 70, 2 ** -1]"
    result = sandbox.call(compile_module(f"def f(x):\n    {body}\n"), "f", 7)
    assert result.value == [21, "abab", [0, 0, 0], 2 ** 100, 6.25, -4, 81, pow(3, 200, 7), 1 << 70, 0.5]


def test_it_keeps_only_the_first_printed_characters():
    """It keeps at most MAX_PRINTED characters of print output per call (a print bomb costs nothing)."""
    from ldengine.sandbox.runtime import MAX_PRINTED, BoundedPrintCollector
    collector = BoundedPrintCollector()
    for _ in range(100):
        collector._call_print("x" * 1000)
    assert len(collector()) == MAX_PRINTED
