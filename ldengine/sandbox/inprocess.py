"""The in-process sandbox, for trusted (teacher-written) function bases."""
from __future__ import annotations

import time
from typing import Any, Callable

from ldengine.errors import SandboxCompileError, UnknownNameError
from ldengine.sandbox import result as r
from ldengine.sandbox.compiled import CompiledModule
from ldengine.sandbox.plain import DEFAULT_LIMITS, Limits, PlainDataError, to_plain

Audit = Callable[[r.SandboxResult], None]


class Sandbox:
    """In-process: restricted compile, guarded runtime, copied inputs, checked outputs.

    For trusted (teacher-written) code. Each call gets a fresh plain-data copy
    of its arguments, so the called function cannot mutate the caller's
    objects; its return value is checked and copied by ``to_plain``; any
    ``Exception`` it raises (``RecursionError`` and ``MemoryError`` included)
    becomes an error result. Restricted builtins and guards deny imports,
    attribute walking, I/O and introspection (see ``runtime.py``).

    It cannot stop an infinite loop, a memory bomb, or a C-level computation
    that runs for minutes: ``Limits.wall_s``, ``cpu_s`` and ``memory_mb`` are
    not enforced here. Run untrusted code in ``IsolatedSandbox``.

    ``audit`` is called with every result (function, source hash, duration,
    outcome), so every call is auditable. ``calls`` and ``errors`` count them.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, audit: Audit | None = None) -> None:
        self.limits = limits
        self.audit = audit
        self.calls = 0
        self.errors = 0

    def call(self, module: CompiledModule, name: str, *args: Any) -> r.SandboxResult:
        """Call ``module.name(*args)``; return a ``SandboxResult``, never raise for its errors."""
        start = time.perf_counter()
        value, error_type, error = self._run(module, name, args)
        result = r.SandboxResult(name, value, error, error_type,
                                 time.perf_counter() - start, module.hash_of(name))
        self.calls += 1
        self.errors += error is not None
        if self.audit is not None:
            self.audit(result)
        return result

    def _run(self, module: CompiledModule, name: str,
             args: tuple[Any, ...]) -> tuple[Any, str | None, str | None]:
        try:
            function = module.runtime_function(name)
        except UnknownNameError as exc:
            return None, r.NOT_FOUND, r.error_text(r.NOT_FOUND, str(exc))
        except SandboxCompileError as exc:
            return None, r.COMPILE_ERROR, r.error_text(r.COMPILE_ERROR, str(exc))
        try:
            copied = to_plain(args, self.limits)
        except PlainDataError as exc:
            return None, r.BAD_ARGUMENT, r.error_text(r.BAD_ARGUMENT, str(exc))
        try:
            value = function(*copied)
        except Exception as exc:  # the called code's failure is a result, not a raise
            return (None, *r.describe(exc))
        try:
            return to_plain(value, self.limits), None, None
        except PlainDataError as exc:
            return None, r.BAD_RETURN_VALUE, r.error_text(r.BAD_RETURN_VALUE, str(exc))

