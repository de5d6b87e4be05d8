"""The sandbox every function of a function base runs through.

Two modes, layered defences (docs/security.md, "The sandbox"):

- ``IsolatedSandbox``: restricted compile (RestrictedPython), guarded runtime,
  copied inputs and checked outputs inside a worker process with OS limits
  (address space, CPU time, no files, no children) and a wall-clock deadline
  enforced by killing the worker's process group. What every function base
  uses by default (warm workers from a shared pool; a call is one round trip).
- ``Sandbox``: the same layers in-process, plus size guards and a CPU-time
  alarm; an opt-in for trusted teacher-written modules only
  (``LDENGINE_SANDBOX=inprocess``), since it cannot stop a segfault or a
  C-level computation.

Both return a ``SandboxResult`` rather than raising. Only plain data crosses
the boundary (``to_plain``).

This package is imported by the worker process, so it imports only the
standard library and RestrictedPython, and ``IsolatedSandbox`` (subprocess
machinery the worker never needs) only when asked for.
"""
from typing import TYPE_CHECKING

from ldengine.sandbox.compiled import CompiledModule, compile_function, compile_module
from ldengine.sandbox.inprocess import Sandbox
from ldengine.sandbox.plain import DEFAULT_LIMITS, Limits, PlainDataError, to_plain
from ldengine.sandbox.result import SandboxResult

if TYPE_CHECKING:
    from ldengine.sandbox.isolated import IsolatedSandbox

__all__ = [
    "CompiledModule", "DEFAULT_LIMITS", "IsolatedSandbox", "Limits", "PlainDataError",
    "Sandbox", "SandboxResult", "compile_function", "compile_module", "to_plain",
]


def __getattr__(name: str) -> "type[IsolatedSandbox]":
    # The worker imports this package: the parent's subprocess machinery stays out of it.
    if name == "IsolatedSandbox":
        from ldengine.sandbox.isolated import IsolatedSandbox
        return IsolatedSandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
