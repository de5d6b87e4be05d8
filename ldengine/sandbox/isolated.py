"""The isolated sandbox: untrusted code in a worker process with OS limits."""
from __future__ import annotations

import functools
import json
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
from typing import Any

import RestrictedPython

import ldengine
from ldengine.errors import SandboxCompileError
from ldengine.sandbox import result as r
from ldengine.sandbox.compiled import CompiledModule, compile_function, source_hash
from ldengine.sandbox.inprocess import Audit
from ldengine.sandbox.plain import DEFAULT_LIMITS, Limits, PlainDataError, from_wire, to_plain, to_wire
from ldengine.sandbox.worker import NOT_LOADED, module_key

STARTUP_TIMEOUT = 30.0  # seconds; generous, a loaded CI machine can be slow
MAX_REPLY = 64 * 2**20  # bytes


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
    one takes ~100 ms). A context manager; ``close()`` kills the worker, as
    does interpreter exit. Calls are serialised by a lock.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, audit: Audit | None = None) -> None:
        self.limits = limits
        self.audit = audit
        self.calls = self.errors = self.workers_started = 0
        self._worker: _Worker | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> IsolatedSandbox:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def worker_pid(self) -> int | None:
        """The process id of the current worker, or None when none is running."""
        return self._worker.proc.pid if self._worker is not None else None

    def start(self) -> None:
        """Start the worker now rather than on the first call."""
        with self._lock:
            self._ensure_worker()

    def close(self) -> None:
        """Kill the worker; a later call starts a fresh one."""
        with self._lock:
            self._discard()

    def call(self, module_or_source: CompiledModule | str, name: str, *args: Any) -> r.SandboxResult:
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
              args: tuple[Any, ...]) -> tuple[Any, str | None, str | None, str]:
        try:
            module = _as_module(module_or_source)
        except SandboxCompileError as exc:
            return _failed(r.COMPILE_ERROR, str(exc), source_hash(str(module_or_source)))
        digest = module.hash_of(name)
        if name not in module.names:
            return _failed(r.NOT_FOUND, f"{module.filename} defines no function {name!r}", digest)
        try:
            wire_args = to_wire(to_plain(args, self.limits))
        except PlainDataError as exc:
            return _failed(r.BAD_ARGUMENT, str(exc), digest)
        try:
            reply = self._exchange(module, name, wire_args)
        except _Failure as failure:
            self._discard()
            return _failed(failure.error_type, failure.message, digest)
        return (*self._outcome(reply), digest)

    def _exchange(self, module: CompiledModule, name: str, args: list[Any]) -> dict[str, Any]:
        worker = self._ensure_worker()
        key = module_key(module)
        request = {"key": key, "kind": module.kind, "filename": module.filename,
                   "imports": list(module.allowed_imports), "name": name, "args": args}
        if key not in worker.loaded:
            request["source"] = module.source
        reply = worker.request(request, self.limits.wall_s)
        if reply.get("error_type") == NOT_LOADED:  # the worker's cache evicted it
            reply = worker.request({**request, "source": module.source}, self.limits.wall_s)
        worker.loaded.add(key)
        return reply

    def _outcome(self, reply: dict[str, Any]) -> tuple[Any, str | None, str | None]:
        if "value" in reply:
            try:
                return to_plain(reply["value"], self.limits), None, None
            except PlainDataError as exc:
                return None, r.BAD_REPLY, r.error_text(r.BAD_REPLY, str(exc))
        error_type = str(reply.get("error_type") or r.BAD_REPLY)[:100]
        return None, error_type, str(reply.get("error") or error_type)[: r.MAX_MESSAGE]

    def _ensure_worker(self) -> _Worker:
        if self._worker is not None and not self._worker.alive():
            self._discard()
        if self._worker is None:
            self._worker = _Worker(self.limits)
            self.workers_started += 1
        return self._worker

    def _discard(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None


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
        self.loaded: set[str] = set()
        self._buffer = bytearray()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-m", "ldengine.sandbox.worker", json.dumps(asdict(limits))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=0, start_new_session=True, env=_worker_env(), cwd="/")
        except OSError as exc:
            raise _Failure(r.WORKER_DIED, f"cannot start a worker: {exc}") from None
        self._finalizer = weakref.finalize(self, _kill, self.proc)
        try:
            self._read(STARTUP_TIMEOUT)
        except _Failure as failure:
            self.kill()
            raise _Failure(r.WORKER_DIED, f"the worker did not start: {failure.message}") from None
        self.proc.stderr.close()  # the worker has pointed its fd 2 at /dev/null

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self._finalizer()

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait up to ``timeout`` seconds for its reply."""
        data = json.dumps(request, separators=(",", ":")).encode() + b"\n"
        view = memoryview(data)
        try:
            while view:  # a raw pipe: one write may take only part of the data
                view = view[os.write(self.proc.stdin.fileno(), view):]
        except OSError:
            raise self._died() from None
        return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        line = self._read_line(time.monotonic() + timeout, timeout)
        try:
            reply = json.loads(line, object_hook=from_wire)
        except Exception as exc:
            raise _Failure(r.BAD_REPLY, f"undecodable reply: {r.describe(exc)[1]}") from None
        if type(reply) is not dict:
            raise _Failure(r.BAD_REPLY, "the reply is not an object")
        return reply

    def _read_line(self, deadline: float, timeout: float) -> bytes:
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while (end := self._buffer.find(b"\n")) < 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
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
        if self.proc.stderr.closed:
            return ""
        text = self.proc.stderr.read(1 << 16).decode(errors="replace").strip()
        return f": {text[-200:]}" if text else ""


def _exit_reason(status: int) -> str:
    if status < 0:
        return f"the worker was killed by {signal.Signals(-status).name}"
    return f"the worker exited with status {status}"


def _kill(proc: subprocess.Popen) -> None:
    """Kill the worker's whole process group, reap it, close its pipes."""
    if proc.returncode is None:  # not reaped yet, so its pid cannot have been reused
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        pipe.close()


def _worker_env() -> dict[str, str]:
    """A minimal environment: where to import ldengine and RestrictedPython from.

    The worker runs with ``-S`` (no site) in ``/``, so only these paths (and
    the parent's ``sys.path``, for anything ldengine's ``__init__`` may
    import) are searched. PYTHONHASHSEED=0 makes set order reproducible across workers.
    """
    roots = [Path(ldengine.__file__).resolve().parent.parent,
             Path(RestrictedPython.__file__).resolve().parent.parent]
    paths = [str(p) for p in roots] + [os.path.abspath(p) for p in sys.path]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
