"""The isolated sandbox: untrusted code in a worker process with OS limits."""
from __future__ import annotations

import functools
import json
import marshal
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import IO, TypeAlias

import RestrictedPython

from ldengine.errors import SandboxCompileError
from ldengine.sandbox import result as r
from ldengine.sandbox.compiled import CompiledModule, compile_function, source_hash
from ldengine.sandbox.inprocess import Audit
from ldengine.sandbox.plain import DEFAULT_LIMITS, Limits, Plain, PlainDataError, loads, to_plain
from ldengine.sandbox.worker import NOT_LOADED, VALUE, module_key

STARTUP_TIMEOUT = 30.0  # seconds; generous, a loaded CI machine can be slow
MAX_REPLY = 64 * 2**20  # bytes
SHARED_IDLE = 2  # warm workers a shared pool keeps per Limits
_Reply: TypeAlias = dict[str | int, Plain]  # a worker's reply: {"value"} or {"error_type", "error"}


class _Failure(Exception):
    """The exchange with the worker failed; the worker must be discarded."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type, self.message = error_type, message


class IsolatedSandbox:
    """Untrusted code in a worker process with OS limits and a wall-clock deadline.

    Protects against everything ``Sandbox`` does, and also against infinite
    loops and C-level long computations (a wall-clock deadline enforced by
    killing the worker's whole process group, plus ``RLIMIT_CPU``), memory
    bombs (``RLIMIT_AS``), file writes (``RLIMIT_FSIZE=0``), child processes
    (``RLIMIT_NPROC=0``, not enforced for root) and interpreter crashes: the call is reported as
    failed and a fresh worker is started on the next call. The worker gets a
    minimal environment (no API keys). Modules are compiled and loaded inside
    the worker; only plain data comes back, converted there under the limits
    and re-validated here.

    Does not protect against: kernel or CPython exploits that escape the
    process (use a container or VM for hostile code), and network access
    (none is reachable through the restricted builtins, but the OS does not
    forbid it). ``RLIMIT_AS`` needs Linux's ``/proc`` to measure the baseline.

    Source is parsed and checked in this process but executed only in the
    worker; pass modules from ``compile_function`` or ``compile_module(...,
    load=False)`` to keep it so. The worker is reused while healthy (starting
    one takes ~100 ms) and keeps the modules it has loaded, so a module's
    source crosses once and a call costs one round trip of its arguments and
    result (tens of microseconds). A context manager; ``close()`` kills the
    worker, as does interpreter exit. Calls are serialised by a lock.

    ``shared=True`` takes workers from a process-wide pool of warm workers
    (one pool per ``Limits``), as every ``FunctionBase`` does: bases built one
    after another reuse the same worker, and ``close()`` leaves the pool alone.
    A worker that failed a call is killed, never returned to the pool.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, audit: Audit | None = None,
                 *, shared: bool = False) -> None:
        self.limits = limits
        self.audit = audit
        self.calls = self.errors = 0
        self.shared = shared
        self._pool = _shared_pool(limits) if shared else _Pool(limits, keep=1)
        self._lock = threading.Lock()

    def __enter__(self) -> IsolatedSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def worker_pid(self) -> int | None:
        """The process id of the worker the next call will use, or None when none is running."""
        return self._pool.idle_pid()

    @property
    def workers_started(self) -> int:
        """How many workers this sandbox's pool has started."""
        return self._pool.started

    def start(self) -> None:
        """Start the worker now rather than on the first call."""
        with self._lock:
            self._pool.release(self._pool.acquire())

    def close(self) -> None:
        """Kill the worker (a shared pool's are left warm); a later call starts a fresh one."""
        with self._lock:
            if not self.shared:
                self._pool.close()

    def call(self, module_or_source: CompiledModule | str, name: str, *args: object) -> r.SandboxResult:
        """Call ``name(*args)`` in the worker; return a ``SandboxResult``, never raise for its errors.

        ``module_or_source`` is a ``CompiledModule`` or the source of one
        function, which is checked here with ``compile_function``.
        """
        start = time.perf_counter()
        with self._lock:
            value, error_type, error, digest = self._call(module_or_source, name, args)
            self.calls += 1
            self.errors += error is not None
        result = r.SandboxResult(name, value, error, error_type, time.perf_counter() - start, digest)
        if self.audit is not None:
            self.audit(result)
        return result

    def _call(self, module_or_source: CompiledModule | str, name: str,
              args: tuple[object, ...]) -> tuple[Plain, str | None, str | None, str]:
        try:
            module = _as_module(module_or_source)
        except SandboxCompileError as exc:
            return _failed(r.COMPILE_ERROR, str(exc), source_hash(str(module_or_source)))
        digest = module.hash_of(name)
        if name not in module.names:
            return _failed(r.NOT_FOUND, f"{module.filename} defines no function {name!r}", digest)
        try:
            plain_args = to_plain(args, self.limits)
        except PlainDataError as exc:
            return _failed(r.BAD_ARGUMENT, str(exc), digest)
        try:
            worker = self._pool.acquire()
            reply = self._exchange(worker, module, name, plain_args)
        except _Failure as failure:
            return _failed(failure.error_type, failure.message, digest)
        self._pool.release(worker)
        return (*_outcome(reply), digest)

    def _exchange(self, worker: _Worker, module: CompiledModule, name: str,
                  args: list[Plain]) -> _Reply:
        try:
            return worker.call(module, name, args, self.limits.wall_s)
        except _Failure:
            worker.kill()
            raise


def _outcome(reply: _Reply) -> tuple[Plain, str | None, str | None]:
    if "value" in reply:  # already checked by ``plain.loads``
        return reply["value"], None, None
    error_type = str(reply.get("error_type") or r.BAD_REPLY)[:100]
    return None, error_type, str(reply.get("error") or error_type)[: r.MAX_MESSAGE]


class _Pool:
    """Warm workers of one ``Limits``; each serves one call at a time.

    ``acquire`` takes an idle worker (or starts one), ``release`` gives a
    healthy one back; beyond ``keep`` idle workers the extra is killed. A
    process that inherits a pool through ``fork`` starts its own workers.
    """

    def __init__(self, limits: Limits, keep: int) -> None:
        self.limits, self.keep = limits, keep
        self.started = 0
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def acquire(self) -> _Worker:
        with self._lock:
            if self._pid != os.getpid():  # forked: those workers talk to the parent
                self._idle, self._pid = [], os.getpid()
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                worker.kill()
        worker = _Worker(self.limits)
        with self._lock:
            self.started += 1
        return worker

    def release(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < self.keep and self._pid == os.getpid():
                self._idle.append(worker)
                return
        worker.kill()

    def idle_pid(self) -> int | None:
        with self._lock:
            return self._idle[-1].proc.pid if self._idle else None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


_SHARED: dict[Limits, _Pool] = {}
_SHARED_LOCK = threading.Lock()


def _shared_pool(limits: Limits) -> _Pool:
    with _SHARED_LOCK:
        if limits not in _SHARED:
            _SHARED[limits] = _Pool(limits, keep=SHARED_IDLE)
        return _SHARED[limits]


def _failed(error_type: str, message: str, digest: str) -> tuple[None, str, str, str]:
    return None, error_type, r.error_text(error_type, message), digest


@functools.lru_cache(maxsize=256)
def _compile_untrusted(source: str) -> CompiledModule:
    return compile_function(source)


def _as_module(module_or_source: CompiledModule | str) -> CompiledModule:
    if isinstance(module_or_source, CompiledModule):
        return module_or_source
    return _compile_untrusted(module_or_source)


class _Worker:
    """One worker process and its pipes; ``request`` enforces the deadline."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.loaded: set[str] = set()
        self._buffer = bytearray()
        self._poller = select.poll()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-m", "ldengine.sandbox.worker", json.dumps(asdict(limits))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=0, start_new_session=True, env=_worker_env(), cwd="/")
        except OSError as exc:
            raise _Failure(r.WORKER_DIED, f"cannot start a worker: {exc}") from None
        self._finalizer = weakref.finalize(self, _kill, self.proc, os.getpid())
        self._stdin, self._stdout, self._stderr = _pipes(self.proc)
        self._poller.register(self._stdout.fileno(), select.POLLIN)
        try:
            self._read(STARTUP_TIMEOUT)
        except _Failure as failure:
            self.kill()
            raise _Failure(r.WORKER_DIED, f"the worker did not start: {failure.message}") from None
        self._stderr.close()  # the worker has pointed its fd 2 at /dev/null

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self._finalizer()

    def call(self, module: CompiledModule, name: str, args: list[Plain], timeout: float) -> _Reply:
        """Call ``name(*args)`` of ``module``, sending its source only if this worker lacks it."""
        key = module_key(module)
        if key in self.loaded:
            reply = self.request((key, name, args), timeout)
            if reply.get("error_type") != NOT_LOADED:  # else the worker's cache evicted it
                return reply
        reply = self.request((key, name, args, module.kind, module.filename,
                              list(module.allowed_imports), module.source), timeout)
        self.loaded.add(key)
        return reply

    def request(self, request: tuple, timeout: float) -> _Reply:
        """Send one request and wait up to ``timeout`` seconds for its reply."""
        payload = marshal.dumps(request)
        view = memoryview(len(payload).to_bytes(4, "little") + payload)
        try:
            while view:  # a raw pipe: one write may take only part of the data
                view = view[os.write(self._stdin.fileno(), view):]
        except OSError:
            raise self._died() from None
        return self._read(timeout)

    def _read(self, timeout: float) -> _Reply:
        line = self._read_line(time.monotonic() + timeout, timeout)
        try:  # JSON only, never pickle or marshal: the worker may be hostile
            if line[:1] == VALUE:
                return {"value": loads(line[1:], self.limits)}
            reply = loads(line, self.limits)
        except PlainDataError as exc:
            raise _Failure(r.BAD_REPLY, f"undecodable reply: {exc}") from None
        if type(reply) is not dict:
            raise _Failure(r.BAD_REPLY, "the reply is not an object")
        reply.pop("value", None)  # a value comes only on a VALUE line
        return reply

    def _read_line(self, deadline: float, timeout: float) -> bytes:
        fd = self._stdout.fileno()
        while (end := self._buffer.find(b"\n")) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poller.poll(math.ceil(remaining * 1000)):
                raise _Failure(r.TIMEOUT, f"no result within {timeout:g} s (wall clock); worker killed")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._died()
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY:
                raise _Failure(r.BAD_REPLY, f"reply larger than {MAX_REPLY} bytes")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def _died(self) -> _Failure:
        try:
            status = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return _Failure(r.WORKER_DIED, "the worker closed its pipe")
        if status == -signal.SIGXCPU:
            return _Failure(r.CPU_LIMIT, "CPU time limit exceeded; worker killed")
        return _Failure(r.WORKER_DIED, _exit_reason(status) + self._stderr_tail())

    def _stderr_tail(self) -> str:
        if self._stderr.closed:
            return ""
        text = self._stderr.read(1 << 16).decode(errors="replace").strip()
        return f": {text[-200:]}" if text else ""


def _pipes(proc: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
    """The worker's stdin, stdout and stderr (``Popen`` has each, as each was asked for)."""
    if proc.stdin is None or proc.stdout is None or proc.stderr is None:
        raise _Failure(r.WORKER_DIED, "the worker started without its pipes")
    return proc.stdin, proc.stdout, proc.stderr


def _exit_reason(status: int) -> str:
    if status < 0:
        return f"the worker was killed by {signal.Signals(-status).name}"
    return f"the worker exited with status {status}"


def _kill(proc: subprocess.Popen, owner: int) -> None:
    """Kill the worker's whole process group, reap it, close its pipes."""
    if os.getpid() != owner:  # a forked child must not kill its parent's worker
        return
    if proc.returncode is None:  # not reaped yet, so its pid cannot have been reused
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _worker_env() -> dict[str, str]:
    """A minimal environment: where to import ldengine and RestrictedPython from.

    The worker runs with ``-S`` (no site) in ``/``, so only these paths (and
    the parent's ``sys.path``, for anything ldengine's ``__init__`` may
    import) are searched. PYTHONHASHSEED=0 makes set order reproducible across workers.
    """
    roots = [Path(__file__).resolve().parents[2],
             Path(RestrictedPython.__file__).resolve().parent.parent]
    paths = [str(p) for p in roots] + [os.path.abspath(p) for p in sys.path]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
