"""Hostile code against the restricted compile and the guarded runtime (in-process)."""
import math
import os
import sys

import pytest

import ldengine
from ldengine.errors import SandboxCompileError
from ldengine.sandbox import Sandbox, compile_module

# eval, exec and breakpoint are refused by RestrictedPython's compiler in any position.
DENIED_NAMES = [
    "open", "compile", "type", "getattr", "setattr", "delattr", "vars", "dir", "globals",
    "locals", "id", "format", "exit", "quit", "input", "help", "memoryview", "bytearray",
    "object", "super", "classmethod", "property",
    "BaseException", "SystemExit", "KeyboardInterrupt", "GeneratorExit",
]


@pytest.fixture()
def sandbox():
    return Sandbox()


def refusal(source):
    with pytest.raises(SandboxCompileError) as info:
        compile_module(source)
    return str(info.value)


@pytest.mark.parametrize("source, message", [
    ("import os\n", "import of 'os' is not allowed"),
    ("def f():\n    return __import__('os')\n", '"__import__" is an invalid variable name'),
    ("def f():\n    return ().__class__.__base__.__subclasses__()\n", '"__class__" is an invalid attribute'),
    ("def f(x):\n    return x.__dict__\n", '"__dict__" is an invalid attribute'),
    ("def f():\n    g = (i for i in [1])\n    return g.gi_frame.f_back\n", '"gi_frame" is a restricted name'),
    ("def f():\n    g = (i for i in [1])\n    return g.gi_code\n", '"gi_code" is a restricted name'),
    ("def f():\n    try:\n        1 / 0\n    except Exception as e:\n        return e.__traceback__.tb_frame\n",
     '"__traceback__" is an invalid attribute'),
    ("def f():\n    return f.__globals__\n", '"__globals__" is an invalid attribute'),
    ("def f():\n    return eval('1')\n", "name 'eval' is not available"),
    ("def f():\n    exec('x = 1')\n", "name 'exec' is not available"),
    ("def f(eval):\n    return eval('1')\n", "Eval calls are not allowed"),
    ("def f():\n    breakpoint()\n", "name 'breakpoint' is not available"),
    ("def f(x):\n    return type(x)\n", "name 'type' is not available"),
    ("def f(x):\n    return getattr(x, 'real')\n", "name 'getattr' is not available"),
    ("def f():\n    return globals()\n", "name 'globals' is not available"),
    ("def f():\n    return open('/etc/passwd').read()\n", "name 'open' is not available"),
    ("def f():\n    exit()\n", "name 'exit' is not available"),
    ("def f():\n    raise SystemExit(1)\n", "name 'SystemExit' is not available"),
    ("def f():\n    raise KeyboardInterrupt\n", "name 'KeyboardInterrupt' is not available"),
])
def test_it_denies_hostile_code_at_compile_time(source, message):
    """It denies imports, dunder and frame attributes, and dangerous builtins before running anything."""
    assert message in refusal(source)


@pytest.mark.parametrize("name", DENIED_NAMES)
def test_it_denies_dangerous_builtins_at_run_time_too(sandbox, name):
    """It denies the name at run time when code slips it past the static check."""
    source = (f"def f(x):\n    def shadow({name}):\n        return {name}\n"
              f"    return {name}(x)\n")  # the parameter makes the static check pass
    result = sandbox.call(compile_module(source), "f", 1)
    assert result.error_type == "NameError" and name in result.error


@pytest.mark.parametrize("body, error_type", [
    ("return '{0.__class__}'.format(x)", "NotImplementedError"),
    ("return '{x.__class__}'.format_map({'x': x})", "NotImplementedError"),
    ("return str.format('{0.__class__}', x)", "NotImplementedError"),
    ("x.a = 1", "TypeError"),
    ("import math\n    math.pi = 3", "TypeError"),
    ("del x.real", "TypeError"),
])
def test_it_denies_attribute_walking_and_attribute_writes(sandbox, body, error_type):
    """It denies str.format attribute paths and writes to attributes, as error results."""
    result = sandbox.call(compile_module(f"def f(x):\n    {body}\n"), "f", 5)
    assert not result.ok and result.error_type == error_type
    assert math.pi == 3.141592653589793


def test_it_denies_writing_attributes_of_a_list(sandbox):
    """It denies setting an attribute on plain data."""
    result = sandbox.call(compile_module("def f(x):\n    x.a = 1\n"), "f", [1])
    assert result.error_type == "AttributeError"


def test_it_denies_imports_the_guard_sees_at_run_time():
    """It denies an import the static check did not see, through the guarded __import__."""
    from ldengine.sandbox.runtime import restricted_builtins
    guarded_import = restricted_builtins(("math",))["__import__"]
    assert guarded_import("math") is math
    with pytest.raises(ImportError, match="not allowed"):
        guarded_import("os")
    with pytest.raises(ImportError):
        guarded_import("math", level=1)


def test_it_leaves_the_host_unaffected_by_hostile_calls(sandbox):
    """It leaves the host's modules, path and environment unchanged after hostile calls."""
    before = (dict(vars(ldengine)), list(sys.path), dict(os.environ), math.pi)
    module = compile_module("def f(x):\n    x.a = 1\n\ndef g(x):\n    return '{0.__class__}'.format(x)\n")
    for name in ("f", "g"):
        assert not sandbox.call(module, name, [1]).ok
    assert (dict(vars(ldengine)), list(sys.path), dict(os.environ), math.pi) == before
