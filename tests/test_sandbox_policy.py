"""The shape of a function base: what compile_module and compile_function accept."""
import pytest

from ldengine.errors import SandboxCompileError, UnknownNameError
from ldengine.sandbox import CompiledModule, compile_function, compile_module
from ldengine.sandbox.compiled import source_hash

TEACHER_MODULE = '''"""Pursuit helpers."""
import math
from math import sqrt

DIRECTIONS = [(1, 0), (-1, 0), (0, 1), (0, -1)]
WEIGHTS = {"near": 2, "far": -1.5}
NAME = "pursuit"


def distance(a: list[int], b: list[int]) -> int:
    """Manhattan distance between two cells."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def euclid(a, b, scale=1.0, *, rounding=None):
    return sqrt((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) * scale + math.pi * 0
'''


def refusal(source, compile_=compile_module):
    with pytest.raises(SandboxCompileError) as info:
        compile_(source)
    return str(info.value)


def test_it_returns_a_compiled_module():
    """It returns a CompiledModule with the names, constants and docs read from the AST."""
    module = compile_module(TEACHER_MODULE, "pursuit.py")
    assert isinstance(module, CompiledModule)
    assert module.names == ("distance", "euclid")
    assert module.constants == {"DIRECTIONS": [(1, 0), (-1, 0), (0, 1), (0, -1)],
                                "WEIGHTS": {"near": 2, "far": -1.5}, "NAME": "pursuit"}
    assert module.doc == "Pursuit helpers."
    assert module.function_doc("distance") == "Manhattan distance between two cells."
    assert module.filename == "pursuit.py" and module.loaded


def test_it_returns_sources_and_hashes_per_function():
    """It returns each def's source segment and its sha256, and the module's sha256."""
    module = compile_module(TEACHER_MODULE)
    source = module.function_source("distance")
    assert source.startswith("def distance(") and source.rstrip().endswith("abs(a[1] - b[1])")
    assert module.function_hash("distance") == source_hash(source)
    assert module.source_hash == source_hash(TEACHER_MODULE) and len(module.source_hash) == 64
    assert module.function_hash("distance") != module.function_hash("euclid")


def test_it_denies_asking_for_an_unknown_function():
    """It raises UnknownNameError naming the missing function."""
    with pytest.raises(UnknownNameError, match="nope"):
        compile_module(TEACHER_MODULE).function_source("nope")


@pytest.mark.parametrize("source, message", [
    ("class A:\n    pass\n", "class definitions are not allowed"),
    ("def f():\n    class A:\n        pass\n    return 1\n", "class definitions are not allowed"),
    ("def deco(f):\n    return f\n\n@deco\ndef f():\n    return 1\n", "decorators are not allowed"),
    ("def f():\n    return 1\n\nf()\n", "Line 4: an expression at module level is not allowed"),
    ("if True:\n    X = 1\n", "the statement `if` at module level"),
    ("for i in [1]:\n    pass\n", "the statement `for` at module level"),
    ("X = len([1])\n", "constant 'X' must be a literal"),
    ("X = Y = 1\n", "single name"),
    ("X: int = 1\n", "annotated assignments are not allowed"),
    ("def f(x=len([])):\n    return x\n", "default arguments of 'f' must be immutable literals"),
    ("def f(x=[]):\n    return x\n", "immutable literals"),
    ("def f(*, x={}):\n    return x\n", "immutable literals"),
    ("def f(x: print('hi')):\n    return x\n", "annotations of 'f' must be type expressions"),
    ("def f():\n    global X\n    X = 1\n", "'global' is not allowed"),
    ("def f():\n    try:\n        return 1\n    except:\n        return 2\n", "a bare 'except:' is not allowed"),
    ("def f():\n    return 1\n\ndef f():\n    return 2\n", "'f' is defined twice"),
    ("import os\n", "import of 'os' is not allowed"),
    ("from os import path\n", "import of 'os' is not allowed"),
    ("from . import x\n", "relative imports are not allowed"),
    ("import math.fake\n", "import of 'math.fake' is not allowed"),
    ("def f():\n    import subprocess\n    return 1\n", "import of 'subprocess' is not allowed"),
    ("def f(:\n", "Line 1: SyntaxError"),
    ("async def f():\n    return 1\n", "async"),
])
def test_it_denies_modules_of_the_wrong_shape(source, message):
    """It denies anything but a docstring, allowed imports, literal constants and plain defs."""
    assert message in refusal(source)


def test_it_denies_with_every_violation_and_its_line():
    """It lists every violation, in line order, with its line number."""
    text = refusal("import os\nX = f()\n\ndef g(x=[]):\n    return x\n")
    assert text.index("Line 1: import") < text.index("Line 2: constant") < text.index("Line 4: default")


def test_it_denies_source_that_is_not_a_string():
    """It denies bytes or other objects as source."""
    assert "must be str" in refusal(b"def f():\n    return 1\n")


def test_it_allows_other_imports_when_asked():
    """It admits exactly the modules named in allowed_imports."""
    assert compile_module("import json\n", allowed_imports=("json",)).names == ()
    assert "not allowed (allowed: none)" in refusal_with_imports("import math\n", ())


def refusal_with_imports(source, allowed):
    with pytest.raises(SandboxCompileError) as info:
        compile_module(source, allowed_imports=allowed)
    return str(info.value)


def test_it_compiles_without_loading_when_asked():
    """It checks and compiles but executes nothing with load=False."""
    module = compile_module("import no_such_module\n", allowed_imports=("no_such_module",), load=False)
    assert not module.loaded
    with pytest.raises(SandboxCompileError, match="ModuleNotFoundError"):
        module.load()


def test_it_accepts_one_plain_def_as_a_function():
    """It accepts exactly one def (plus imports) from untrusted code, and does not execute it."""
    module = compile_function("import math\n\ndef f(x):\n    return math.sqrt(x)\n")
    assert module.names == ("f",) and module.kind == "function"
    assert not module.loaded


@pytest.mark.parametrize("source, message", [
    ("X = 1\n\ndef f():\n    return X\n", "assignment at module level is not allowed; only one def"),
    ("def f():\n    return 1\n\ndef g():\n    return 2\n", "exactly one top-level def, found 2"),
    ("import math\n", "exactly one top-level def, found 0"),
    ("class A:\n    pass\n", "class definitions are not allowed"),
])
def test_it_denies_untrusted_code_that_is_not_one_def(source, message):
    """It denies constants, several defs, no def, or classes in untrusted code."""
    assert message in refusal(source, compile_function)


@pytest.mark.parametrize("expression", ["+".join(["1"] * 2000), "-" * 2000 + "1", "[" * 300 + "]" * 300])
def test_it_denies_source_nested_too_deeply(expression):
    """It refuses pathologically nested code with SandboxCompileError, not a crash or RecursionError."""
    refusal(f"def f():\n    return {expression}\n", compile_function)
