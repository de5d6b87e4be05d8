"""The sandbox every function of a function base runs through.

Two modes, layered defences (DESIGN.md, "Sandbox"):

- ``Sandbox``: in-process, for trusted teacher-written modules. Restricted
  compile (RestrictedPython), guarded runtime, copied inputs, checked outputs.
- ``IsolatedSandbox``: the same inside a worker process with OS limits
  (address space, CPU time, no files, no children) and a wall-clock deadline
  enforced by killing the worker's process group; for untrusted code.

Both return a ``SandboxResult`` rather than raising. Only plain data crosses
the boundary (``to_plain``).

This package is imported by the worker process, so it imports only the
standard library and RestrictedPython, and ``IsolatedSandbox`` (subprocess
machinery the worker never needs) only when asked for.
"""
from typing import Any

from ldengine.sandbox.compiled import CompiledModule, compile_function, compile_module
from ldengine.sandbox.inprocess import Sandbox
from ldengine.sandbox.plain import DEFAULT_LIMITS, Limits, PlainDataError, to_plain
from ldengine.sandbox.result import SandboxResult

__all__ = [
    "CompiledModule", "DEFAULT_LIMITS", "IsolatedSandbox", "Limits", "PlainDataError",
    "Sandbox", "SandboxResult", "compile_function", "compile_module", "to_plain",
]


def __getattr__(name: str) -> Any:
    if name == "IsolatedSandbox":
        from ldengine.sandbox.isolated import IsolatedSandbox
        return IsolatedSandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
