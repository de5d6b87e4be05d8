"""The public face of ldengine.sandbox: names, results, and a light import."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import ldengine
import ldengine.sandbox
from ldengine.sandbox import IsolatedSandbox, Limits, SandboxResult
from ldengine.sandbox.result import error_text

PUBLIC = ["SandboxResult", "Limits", "CompiledModule", "compile_module", "compile_function",
          "Sandbox", "IsolatedSandbox", "to_plain", "PlainDataError"]


def test_it_exports_the_public_names():
    """It exports every public name the rest of ldengine relies on."""
    for name in PUBLIC:
        assert getattr(ldengine.sandbox, name) is not None
        assert name in ldengine.sandbox.__all__


def test_it_returns_frozen_results():
    """It returns results that cannot be changed after the fact, so audits stay true."""
    result = SandboxResult("f", value=1)
    assert result.ok
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.value = 2
    assert not SandboxResult("f", error="ValueError: x", error_type="ValueError").ok


def test_it_returns_default_limits():
    """It defaults to 2 s wall and CPU, 256 MiB, depth 32, 100000 items and characters, 300-digit ints."""
    assert dataclasses.astuple(Limits()) == (2.0, 2.0, 256, 32, 100_000, 100_000, 300)


def test_it_denies_limits_that_are_not_positive():
    """It refuses a zero or negative limit instead of silently disabling it."""
    with pytest.raises(ValueError, match="wall_s"):
        Limits(wall_s=0)


def test_it_truncates_error_text():
    """It formats errors as "TypeName: message", at most about 300 characters."""
    assert error_text("ValueError", "bad") == "ValueError: bad"
    assert error_text("Timeout", "") == "Timeout"
    assert len(error_text("ValueError", "x" * 1000)) <= 300


def test_it_imports_light():
    """It imports neither heavy libraries nor the subprocess machinery with the package."""
    code = ("import sys, ldengine.sandbox; "
            "print(sorted(m for m in ('torch', 'numpy', 'transformers', 'subprocess', "
            "'ldengine.sandbox.isolated') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(ldengine.__file__).parent.parent)
    assert out.stdout.strip() == "[]"


def test_it_reports_a_worker_that_cannot_start(monkeypatch):
    """It reports WorkerDied, with the worker's own error, when the worker cannot start."""
    import ldengine.sandbox.isolated as isolated
    monkeypatch.setattr(isolated, "_worker_env", lambda: {"PYTHONPATH": "/nonexistent"})
    with IsolatedSandbox() as sandbox:
        result = sandbox.call("def f():\n    return 1\n", "f")
    assert result.error_type == "WorkerDied"
    assert "did not start" in result.error and "ldengine" in result.error
