"""Engine-side inputs that used to hang or raise a traceback (issue 34): each is answered in
one line before any worker starts. ``sandbox run`` refuses non-regular files and bounds
``--args``; ``Limits`` refuses bounds it cannot enforce; the policy refuses a ``finally`` that
leaves by return/break/continue (it would swallow the time limit's exception)."""
import os

import pytest
from click.testing import CliRunner

from ldengine.api import run_function
from ldengine.cli import cli
from ldengine.sandbox.plain import Limits, LimitsError

MODULE = "def f(*args):\n    return len(args)\n"


def _run(tmp_path, file, *extra):
    return CliRunner().invoke(cli, ["sandbox", "run", str(file), "--function", "f", *extra])


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_sandbox_run_refuses_a_file_whose_reading_never_ends(tmp_path, kind):
    path = "/dev/zero" if kind == "device" else tmp_path / "pipe"
    if kind == "fifo":
        os.mkfifo(path)
    result = _run(tmp_path, path)
    assert result.exit_code == 2 and "is not a regular file" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, said", [
    ("[" * 20000 + "]" * 20000, "nested too deeply"),
    ("[" + "9" * 5000 + "]", "4300 digits"),
    ("[" + "1," * 600_000 + "1]", "longer than"),
])
def test_sandbox_run_answers_unusable_args_in_one_line(tmp_path, args, said):
    (tmp_path / "m.py").write_text(MODULE)
    result = _run(tmp_path, tmp_path / "m.py", "--args", args)
    assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output, result.output[-300:]


@pytest.mark.parametrize("bounds", [{"wall_s": 0}, {"cpu_s": -1}, {"wall_s": float("nan")},
                                    {"memory_mb": 10 ** 12}, {"wall_s": 10 ** 9}, {"memory_mb": True}])
def test_limits_that_cannot_be_enforced_are_refused(bounds):
    with pytest.raises(LimitsError, match="must be a number above 0"):
        Limits(**bounds)
    timeout = bounds.get("wall_s", 1)
    if "wall_s" in bounds:
        with pytest.raises(LimitsError):
            run_function(MODULE, "f", timeout=timeout)


@pytest.mark.parametrize("leaves, body", [
    ("continue", "    n = 0\n    while n < 3:\n        try:\n            n += 1\n        finally:\n            continue\n"),
    ("return", "    try:\n        return 1\n    finally:\n        return 2\n"),
    ("break", "    for j in range(2):\n        try:\n            pass\n        finally:\n"
              "            for i in range(3):\n                pass\n            else:\n                break\n"),
])
def test_a_finally_that_leaves_is_refused(leaves, body):
    result = run_function("def f():\n" + body, "f", timeout=1)
    assert not result.ok and f"a '{leaves}' that leaves a finally block" in result.error, result.error


GENERATOR = "def g():\n    try:\n        yield 1\n    finally:\n        while True:\n            pass\n\n"


@pytest.mark.parametrize("use", [
    "def f(x):\n    it = g()\n    next(it)\n    return it\n",                               # dropped at once
    "def f(x):\n    it = g()\n    next(it)\n    a = [it]\n    a.append(a)\n    return 1\n",   # dropped by gc later
])
def test_a_finally_in_a_generator_is_refused_in_process_too(use):
    """An independent referee's find (issue 34): in-process, a generator whose finally loops for
    ever ran that block when the generator was dropped, after the call and its CPU alarm: the
    engine's process spun for ever. Such a generator is refused before it runs."""
    from ldengine.sandbox import compile_module
    from ldengine.sandbox.inprocess import Sandbox as InProcess
    from ldengine.errors import SandboxCompileError
    with pytest.raises(SandboxCompileError, match="finally block in a generator"):
        compile_module(GENERATOR + use)
    assert "finally block in a generator" in run_function(GENERATOR + use, "f", 1, timeout=2).error
    plain = "def g():\n    yield 1\n    yield 2\n\ndef f(x):\n    return sum(g()) + x\n"
    assert InProcess(Limits(cpu_s=1.0)).call(compile_module(plain), "f", 1).value == 4


def test_a_loop_of_its_own_inside_finally_may_break():
    body = ("    t = 0\n    try:\n        t = 1\n    finally:\n        for i in range(3):\n"
            "            if i == 1:\n                break\n            t += i\n    return t\n")
    result = run_function("def f():\n" + body, "f", timeout=5)
    assert result.ok and result.value == 1, result.error


def test_a_module_of_thousands_of_defs_is_refused_before_it_is_compiled():
    """Compiling grows with the square of the defs: 4,000 of them are refused before parsing,
    in the engine's process, at once; a module under the cap still compiles and runs."""
    from ldengine.sandbox.compiled import MAX_DEFS
    many = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(4000))
    result = run_function(many, "f1", 1)
    assert not result.ok and f"more than {MAX_DEFS} definitions" in result.error
    few = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(50))
    assert run_function(few, "f1", 1).value == 2
