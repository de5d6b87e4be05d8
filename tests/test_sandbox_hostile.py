"""Hostile functions on every path a function can run: the in-process Sandbox (trusted
code, opt-in), the IsolatedSandbox, and a FunctionBase, isolated by default. Each gets an
error result and the next call works; untrusted modules never run in this process."""
import os

import pytest

from ldengine.functionbase import FunctionBase
from ldengine.registry import ModuleSource
from ldengine.sandbox import IsolatedSandbox, Limits, Sandbox, compile_module
from ldengine.sandbox.inprocess import Sandbox as InProcess

# A small CPU budget keeps the in-process dict bomb to a few hundred MB at most.
LIMITS = Limits(wall_s=2.0, cpu_s=0.3, memory_mb=256)

HOSTILE = {
    "an infinite loop": ("while True:\n        pass", ("Timeout", "CPULimit")),
    "a huge int power": ("return 10 ** 10 ** 8", ("OverflowError",)),
    "a huge repetition": ("return [0] * 10 ** 10", ("MemoryError", "MemoryLimit")),
    "a dict bomb": ("d = {}\n    i = 0\n    while True:\n        d[i] = i\n        i += 1",
                    ("Timeout", "CPULimit", "MemoryLimit")),
    "a print bomb": ("while True:\n        print('x' * 10000)", ("Timeout", "CPULimit")),
    "a 5,000-digit int result": ("return int('9' * 4000) * 10 ** 1000", ("BadReturnValue",)),
    "deep recursion": ("return f(x + 1)", ("RecursionError",)),
}


def doc(name):
    return (f'"""{name}.\n\n    Stage: toy.decide\n    Reads: x\n    Returns: x\n    Rules: none.\n'
            f'    Example:\n        >>> {name}(1)\n        1\n    """\n')


def module_text(body, name="f"):
    return f"VERSION = '1.0.0'\n\n\ndef {name}(x):\n    {doc(name)}    {body}\n\n\ndef ok(x):\n    {doc('ok')}    return x\n"


@pytest.fixture(scope="module")
def isolated():
    with IsolatedSandbox(LIMITS) as sandbox:
        yield sandbox


@pytest.mark.parametrize("what", HOSTILE)
def test_it_denies_hostile_functions_in_process(what):
    """It stops each hostile function of the in-process sandbox with an error result."""
    body, expected = HOSTILE[what]
    module = compile_module(module_text(body))
    sandbox = Sandbox(LIMITS)
    result = sandbox.call(module, "f", 1)
    assert not result.ok and result.error_type in expected, result
    assert sandbox.call(module, "ok", 2).value == 2


@pytest.mark.parametrize("what", HOSTILE)
def test_it_denies_hostile_functions_in_the_worker(what, isolated):
    """It stops each hostile function in the isolated worker with an error result."""
    body, expected = HOSTILE[what]
    module = compile_module(module_text(body), load=False)
    result = isolated.call(module, "f", 1)
    assert not result.ok and result.error_type in expected, result
    assert isolated.call(module, "ok", 2).value == 2


def base_of(body, plugin, inprocess):
    source = ModuleSource("toy", module_text(body), f"toy/{plugin}.py", plugin)
    return FunctionBase.build("toy", [source], Sandbox(LIMITS), inprocess=inprocess)


@pytest.mark.parametrize("what", ["an infinite loop", "a 5,000-digit int result", "deep recursion"])
def test_it_runs_every_base_isolated_by_default(what, monkeypatch):
    """It runs even the built-in plugins' modules in the worker unless asked otherwise."""
    monkeypatch.delenv("LDENGINE_SANDBOX", raising=False)
    body, expected = HOSTILE[what]
    base = base_of(body, "ldengine_plugins.pursuit", None)
    assert not base.inprocess and not base.modules["toy/ldengine_plugins.pursuit.py"].loaded
    result = base.call("f", 1)
    assert result.error_type in expected and not result.ok
    assert base.call("ok", 3).value == 3
    assert base.isolated.worker_pid not in (None, os.getpid())


def test_it_runs_built_in_modules_in_process_only_when_asked(monkeypatch):
    """It runs the built-in plugins' modules in this process with LDENGINE_SANDBOX=inprocess."""
    monkeypatch.setenv("LDENGINE_SANDBOX", "inprocess")
    base = base_of("return x", "ldengine_plugins.pursuit", None)
    assert base.inprocess == {"toy/ldengine_plugins.pursuit.py"}
    assert base.call("f", 1).value == 1 and base.isolated is None


@pytest.mark.parametrize("plugin", ["version distilled-0123abcd", "ldengine-pursuit-extras", "generated"])
def test_it_never_runs_untrusted_modules_in_process(plugin):
    """It runs a stored version's, a third-party plugin's or a generated module only in the
    worker, even when in-process calls are asked for."""
    base = base_of("return int('9' * 4000) * 10 ** 1000", plugin, True)
    assert not base.inprocess and not base.modules[f"toy/{plugin}.py"].loaded
    assert base.call("f", 1).error_type == "BadReturnValue"
    assert base.call("ok", 4).value == 4 and base.isolated.worker_pid not in (None, os.getpid())


def test_it_refuses_an_unknown_sandbox_mode(monkeypatch):
    """It names the two modes when LDENGINE_SANDBOX holds something else."""
    monkeypatch.setenv("LDENGINE_SANDBOX", "none")
    with pytest.raises(Exception, match="inprocess"):
        base_of("return x", "ldengine_plugins.pursuit", None)


def test_the_alarm_leaves_no_timer_behind():
    """It disarms its CPU-time alarm after a call and gives a previous SIGVTALRM handler back."""
    import signal
    seen = []
    previous = signal.signal(signal.SIGVTALRM, lambda *_: seen.append(1))
    try:
        handler = signal.getsignal(signal.SIGVTALRM)
        InProcess(LIMITS).call(compile_module(module_text("while True:\n        pass")), "f", 1)
        assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)
        assert signal.getsignal(signal.SIGVTALRM) is handler and not seen
    finally:
        signal.signal(signal.SIGVTALRM, previous)


def test_expert_games_are_the_same_isolated_and_in_process(registry, monkeypatch):
    """It plays the same expert games, step for step, isolated (the default) and in-process."""
    from ldengine.runner import RunConfig, run_games
    outcomes = {}
    for mode in ("isolated", "inprocess"):
        monkeypatch.setenv("LDENGINE_SANDBOX", mode)
        summary = run_games(registry, RunConfig(task="pursuit", agent="expert", games=2, progress=False)).summary
        outcomes[mode] = {k: summary[k] for k in ("success", "avg_steps_success", "violations")}
    assert outcomes["isolated"] == outcomes["inprocess"] and outcomes["isolated"]["success"] == 1.0
