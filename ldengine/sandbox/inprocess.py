"""The in-process sandbox, for trusted (teacher-written) function bases."""
from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING, Callable

from ldengine.errors import SandboxCompileError, UnknownNameError
from ldengine.sandbox import result as r
from ldengine.sandbox.compiled import CompiledModule
from ldengine.sandbox.plain import DEFAULT_LIMITS, Limits, Plain, PlainDataError, to_plain

if TYPE_CHECKING:
    from types import FrameType

Audit = Callable[[r.SandboxResult], None]


class Sandbox:
    """In-process: restricted compile, guarded runtime, copied inputs, checked outputs.

    For trusted (teacher-written) code only, as an explicit opt-in
    (``LDENGINE_SANDBOX=inprocess``): every function base runs isolated by
    default. Each call gets a fresh plain-data copy of its arguments, so the
    called function cannot mutate the caller's objects; its return value is
    checked and copied by ``to_plain`` (ints of at most
    ``Limits.max_int_digits`` digits, bounded strings, sizes and depth); any
    ``Exception`` it raises (``RecursionError`` and ``MemoryError`` included)
    becomes an error result. Restricted builtins and guards deny imports,
    attribute walking, I/O and introspection, and refuse huge ``*``, ``**``
    and ``<<`` results before computing them (see ``runtime.py``).

    A runaway Python loop is stopped by a CPU-time alarm (``ITIMER_VIRTUAL``,
    ``Limits.cpu_s``, re-fired every 50 ms until the call ends) that raises
    ``CPUTimeExceeded``, a ``BaseException`` the called code cannot catch (it
    has no name for it and the policy refuses a bare ``except:``); the call is
    reported as ``CPULimit``. The alarm works only when the call runs in the
    main thread (elsewhere there is no guard) and costs two ``setitimer``
    system calls per call (about 1 µs; benchmarks/RESULTS.md, "Isolation").

    What it cannot stop, and why untrusted code never runs here: a segfault
    (deep C recursion, e.g. a long chain of nested ``map`` objects or slices)
    kills the host; a C-level computation (``math.factorial(10 ** 8)``,
    ``sum(range(10 ** 12))``) never returns to the interpreter, so no alarm
    fires; memory (a dict bomb grows until the alarm, hundreds of MB later) and
    ``Limits.wall_s``/``memory_mb`` are not enforced. ``IsolatedSandbox``
    contains all of these.

    ``audit`` is called with every result (function, source hash, duration,
    outcome), so every call is auditable. ``calls`` and ``errors`` count them.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, audit: Audit | None = None) -> None:
        self.limits = limits
        self.audit = audit
        self.calls = 0
        self.errors = 0

    def call(self, module: CompiledModule, name: str, *args: object) -> r.SandboxResult:
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
             args: tuple[object, ...]) -> tuple[Plain, str | None, str | None]:
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
            value = guarded_call(function, copied, self.limits.cpu_s)
        except CPUTimeExceeded as exc:
            return None, r.CPU_LIMIT, r.error_text(r.CPU_LIMIT, str(exc))
        except Exception as exc:  # the called code's failure is a result, not a raise
            return (None, *r.describe(exc))
        try:
            return to_plain(value, self.limits), None, None
        except PlainDataError as exc:
            return None, r.BAD_RETURN_VALUE, r.error_text(r.BAD_RETURN_VALUE, str(exc))



class CPUTimeExceeded(BaseException):
    """Raised into sandboxed code by the CPU-time alarm; not an ``Exception``, so it cannot catch it."""


_MAIN_THREAD = threading.main_thread().ident
_REFIRE_S = 0.05
_armed = [False]  # a late alarm after the call ended must not raise in the host


def guarded_call(function: Callable[..., object], args: list[Plain], cpu_s: float) -> object:
    """``function(*args)`` under a CPU-time alarm of ``cpu_s`` seconds (main thread only).

    The previous ``ITIMER_VIRTUAL`` timer is put back afterwards, and so is a
    previous Python ``SIGVTALRM`` handler; where there was none, the alarm's
    handler stays installed (it ignores the signal outside a guarded call),
    which saves two system calls per call.
    """
    if threading.get_ident() != _MAIN_THREAD or _armed[0]:
        return function(*args)
    previous = signal.getsignal(signal.SIGVTALRM)  # Python's table: no system call
    if previous is not _on_alarm:
        signal.signal(signal.SIGVTALRM, _on_alarm)
    timer = signal.setitimer(signal.ITIMER_VIRTUAL, cpu_s, _REFIRE_S)
    _armed[0] = True
    try:
        return function(*args)
    finally:
        _armed[0] = False
        signal.setitimer(signal.ITIMER_VIRTUAL, *timer)
        if callable(previous) and previous is not _on_alarm:
            signal.signal(signal.SIGVTALRM, previous)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    if _armed[0]:
        raise CPUTimeExceeded("CPU time limit exceeded (in-process alarm)")
