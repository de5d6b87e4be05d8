"""The IsolatedSandbox: untrusted code in a worker process with OS limits."""
import os
import signal
import threading

import pytest

from ldengine.sandbox import IsolatedSandbox, Limits, compile_function, compile_module
from ldengine.sandbox.isolated import _worker_env

LIMITS = Limits(wall_s=1.0, cpu_s=2.0, memory_mb=256)
ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def sandbox():
    with IsolatedSandbox(LIMITS) as isolated:
        yield isolated


def still_works(sandbox):
    result = sandbox.call(ADD, "add", 1, 2)
    return result.ok and result.value == 3


def function(body, params=""):
    return f"def f({params}):\n    " + body.replace("\n", "\n    ") + "\n"


def test_it_returns_value_duration_and_hash(sandbox):
    """It returns the value, the duration and the source hash of the called function."""
    result = sandbox.call(ADD, "add", 2, 3)
    assert result.ok and result.value == 5 and result.function == "add"
    assert 0 < result.duration < LIMITS.wall_s
    assert result.source_hash == compile_function(ADD).function_hash("add")


def test_it_returns_plain_data_exactly(sandbox):
    """It carries int dict keys, nested lists and floats back exactly; tuples become lists."""
    source = function("return {1: x, 'k': [x, (x, 2.5)], 'n': None, 'b': True}", "x")
    assert sandbox.call(source, "f", [1, 2]).value == {
        1: [1, 2], "k": [[1, 2], [[1, 2], 2.5]], "n": None, "b": True}


def test_it_runs_teacher_modules_too(sandbox):
    """It runs a CompiledModule from compile_module, constants included, inside the worker."""
    module = compile_module("STEP = 2\n\ndef step(x):\n    return x + STEP\n")
    assert sandbox.call(module, "step", 1).value == 3


def test_it_reuses_a_healthy_worker(sandbox):
    """It keeps the same worker process across successful calls."""
    sandbox.call(ADD, "add", 1, 1)
    pid = sandbox.worker_pid
    assert still_works(sandbox) and sandbox.worker_pid == pid


def test_it_copies_inputs(sandbox):
    """It leaves the caller's object unchanged when the function mutates its input."""
    state = {"cells": [[1, 2]]}
    result = sandbox.call(function("state['cells'].append(0)\nreturn state", "state"), "f", state)
    assert result.value == {"cells": [[1, 2], 0]} and state == {"cells": [[1, 2]]}


@pytest.mark.parametrize("body", [
    "while True:\n    pass",
    "while True:\n    try:\n        pass\n    except Exception:\n        pass",
])
def test_it_denies_an_infinite_loop(sandbox, body):
    """It reports Timeout after wall_s, kills the worker, and the next call gets a fresh one."""
    sandbox.call(ADD, "add", 1, 1)
    pid = sandbox.worker_pid
    result = sandbox.call(function(body), "f")
    assert result.error_type == "Timeout" and result.duration < LIMITS.wall_s + 1.0
    assert still_works(sandbox) and sandbox.worker_pid != pid


def test_it_denies_a_long_c_level_computation(sandbox):
    """It stops sum(range(10**12)), which never returns to the interpreter loop, by the deadline."""
    result = sandbox.call(function("return sum(range(10 ** 12))"), "f")
    assert result.error_type in ("Timeout", "CPULimit")
    assert still_works(sandbox)


def test_it_denies_cpu_time_beyond_the_limit():
    """It reports CPULimit when RLIMIT_CPU ends the worker before the wall-clock deadline."""
    with IsolatedSandbox(Limits(wall_s=20.0, cpu_s=1.0)) as sandbox:
        result = sandbox.call(function("while True:\n    pass"), "f")
        assert result.error_type == "CPULimit"
        assert still_works(sandbox)


@pytest.mark.parametrize("body", [
    "return [0] * 10 ** 10",
    "return 'a' * 10 ** 10",
    "x = []\nwhile True:\n    x.append([0] * 10 ** 6)",
])
def test_it_denies_memory_bombs(sandbox, body):
    """It reports MemoryLimit when the function exceeds its address space."""
    result = sandbox.call(function(body), "f")
    assert result.error_type == "MemoryLimit" and "MemoryError" in result.error
    assert still_works(sandbox)


def test_it_returns_recursion_error(sandbox):
    """It reports unbounded recursion as RecursionError."""
    result = sandbox.call("def f(n):\n    return f(n + 1)\n", "f", 0)
    assert result.error_type == "RecursionError"
    assert still_works(sandbox)


def test_it_returns_an_exception_as_a_result(sandbox):
    """It reports an exception as "TypeName: message"."""
    result = sandbox.call(function("return 1 / 0"), "f")
    assert result.error == "ZeroDivisionError: division by zero"
    assert still_works(sandbox)


@pytest.mark.parametrize("body, message", [
    ("return {1, 2}", "set is not plain data"),
    ("return (i for i in [1])", "generator is not plain data"),
    ("return lambda: 1", "function is not plain data"),
    ("return float('inf')", "not a finite float"),
    ("return [0] * 200000", "more than 100000 items"),
    ("return 10 ** 5000", "an int with more than 300 digits"),
])
def test_it_denies_return_values_that_are_not_plain(sandbox, body, message):
    """It reports BadReturnValue, converted inside the worker, for non-plain results."""
    result = sandbox.call(function(body), "f")
    assert result.error_type == "BadReturnValue" and message in result.error
    assert still_works(sandbox)


@pytest.mark.parametrize("source", [
    "import os\n\ndef f():\n    return os.getcwd()\n",
    "def f():\n    return __import__('os')\n",
    "def f():\n    return ().__class__.__base__.__subclasses__()\n",
    "def f():\n    exit()\n",
    "def f():\n    quit()\n",
    "X = 1\n\ndef f():\n    return X\n",
])
def test_it_denies_hostile_code_before_starting_a_worker(source):
    """It reports CompileError for refused code without running it anywhere."""
    with IsolatedSandbox(LIMITS) as sandbox:
        result = sandbox.call(source, "f")
        assert result.error_type == "CompileError" and sandbox.worker_pid is None


@pytest.mark.parametrize("name", ["open", "type", "getattr", "globals"])
def test_it_denies_dangerous_builtins_in_the_worker(sandbox, name):
    """It reports NameError when code slips a denied builtin past the static check."""
    source = f"def f(x):\n    def shadow({name}):\n        return 1\n    return {name}(x)\n"
    result = sandbox.call(source, "f", "/etc/passwd")
    assert result.error_type == "NameError"
    assert still_works(sandbox)


def test_it_reports_an_unknown_function(sandbox):
    """It reports NotFound for a name the code does not define."""
    assert sandbox.call(ADD, "sub", 1, 2).error_type == "NotFound"


def test_it_reports_a_worker_killed_during_a_call():
    """It reports WorkerDied when the worker dies mid-call, and the next call gets a fresh one."""
    with IsolatedSandbox(Limits(wall_s=10.0, cpu_s=10.0)) as sandbox:
        sandbox.start()
        killer = threading.Timer(0.3, os.kill, (sandbox.worker_pid, signal.SIGKILL))
        killer.start()
        result = sandbox.call(function("while True:\n    pass"), "f")
        killer.join()
        assert result.error_type == "WorkerDied" and "SIGKILL" in result.error
        assert still_works(sandbox)


def test_it_replaces_a_worker_that_died_while_idle(sandbox):
    """It replaces a worker killed between calls (the first call may still report WorkerDied)."""
    assert still_works(sandbox)
    pid = sandbox.worker_pid
    os.kill(pid, signal.SIGKILL)
    first = sandbox.call(ADD, "add", 1, 2)
    assert first.ok or first.error_type == "WorkerDied"
    assert still_works(sandbox) and sandbox.worker_pid != pid


def test_it_kills_the_worker_on_close():
    """It kills the worker process when closed."""
    sandbox = IsolatedSandbox(LIMITS)
    assert still_works(sandbox)
    pid = sandbox.worker_pid
    sandbox.close()
    assert sandbox.worker_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_it_audits_every_call():
    """It passes every result, successes and failures, to the audit callback."""
    seen = []
    with IsolatedSandbox(LIMITS, audit=seen.append) as sandbox:
        results = [sandbox.call(ADD, "add", 1, 2), sandbox.call(function("return 1 / 0"), "f"),
                   sandbox.call("import os\n", "f")]
    assert seen == results and [r.ok for r in seen] == [True, False, False]
    assert (sandbox.calls, sandbox.errors) == (3, 2)


def test_it_denies_the_worker_the_hosts_environment(monkeypatch):
    """It gives the worker a minimal environment, without the host's secrets."""
    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    env = _worker_env()
    assert "OPENAI_API_KEY" not in env and set(env) <= {
        "PYTHONPATH", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING"}


def test_shared_sandboxes_reuse_one_warm_worker():
    """It hands shared sandboxes (every FunctionBase's) the same warm worker, and close() leaves it warm."""
    limits = Limits(wall_s=1.5, cpu_s=1.0, memory_mb=200)
    first, second = IsolatedSandbox(limits, shared=True), IsolatedSandbox(limits, shared=True)
    assert still_works(first)
    pid = first.worker_pid
    first.close()
    assert still_works(second) and second.worker_pid == pid


def test_it_never_returns_a_failed_worker_to_the_pool():
    """It kills a worker whose call timed out instead of handing it to the next shared sandbox."""
    limits = Limits(wall_s=0.5, cpu_s=1.0, memory_mb=200)
    sandbox = IsolatedSandbox(limits, shared=True)
    assert still_works(sandbox)
    pid = sandbox.worker_pid
    assert sandbox.call(function("while True:\n    pass"), "f").error_type == "Timeout"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert still_works(IsolatedSandbox(limits, shared=True))


def test_it_sends_a_module_once():
    """It sends a module's source with the first call only; later calls name it by its key."""
    with IsolatedSandbox(LIMITS) as sandbox:
        module = compile_module("def f(x):\n    return x\n", load=False)
        sandbox.call(module, "f", 1)
        sent = []
        worker = sandbox._pool._idle[-1]
        request = worker.request
        worker.request = lambda req, timeout: sent.append(req) or request(req, timeout)
        assert sandbox.call(module, "f", 2).value == 2
        assert [len(req) for req in sent] == [3] and sent[0][1:] == ("f", [2])
