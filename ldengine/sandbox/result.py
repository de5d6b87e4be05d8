"""The outcome of one sandboxed call, and the error kinds it can report."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ldengine.sandbox.plain import Plain

# error_type values the sandbox itself produces; an exception raised by the
# called code is reported under its own type name ("ZeroDivisionError", ...).
COMPILE_ERROR = "CompileError"
NOT_FOUND = "NotFound"
BAD_ARGUMENT = "BadArgument"
BAD_RETURN_VALUE = "BadReturnValue"
TIMEOUT = "Timeout"
CPU_LIMIT = "CPULimit"
MEMORY_LIMIT = "MemoryLimit"
WORKER_DIED = "WorkerDied"
BAD_REPLY = "BadReply"

MAX_MESSAGE = 300


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed call returned, or why it failed; the sandbox never raises.

    Protects against: called code raising, returning non-plain data (sets,
    objects, generators, callables, subclasses of builtins, oversized or too
    deep structures), mutating its inputs, and, in ``IsolatedSandbox``, hanging,
    exhausting memory or CPU, or crashing the interpreter.

    Does not protect against: a *correct-looking* wrong answer, and, in the
    in-process ``Sandbox``, segfaults, C-level long computations and memory
    growth (its CPU-time alarm stops Python loops only); those need
    ``IsolatedSandbox``.

    ``value`` is plain data (see ``to_plain``) and ``None`` on error; ``error``
    is ``"TypeName: message"`` truncated to about 300 characters; ``duration``
    is the wall time of the whole call in seconds; ``source_hash`` is the
    sha256 hex digest of the called function's source.
    """

    function: str
    value: Plain = None
    error: str | None = None
    error_type: str | None = None
    duration: float = 0.0
    source_hash: str = ""

    @property
    def ok(self) -> bool:
        """True when the call returned a plain value."""
        return self.error is None


def error_text(error_type: str, message: str) -> str:
    """``"TypeName: message"`` (or just the type name), at most ~300 characters."""
    text = f"{error_type}: {message}" if message else error_type
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    return text


def describe(exc: BaseException) -> tuple[str, str]:
    """``(error_type, error)`` for an exception raised by called code."""
    name = type(exc).__name__
    try:
        message = str(exc)[: MAX_MESSAGE * 2]
    except Exception:  # a message that cannot even be printed
        message = "<unprintable message>"
    return name, error_text(name, message)
