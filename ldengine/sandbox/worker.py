"""The isolated worker: runs untrusted function bases under OS limits.

Started by ``IsolatedSandbox`` as ``python -S -m ldengine.sandbox.worker LIMITS``
in a new session; fds 0-2 are then pointed at ``/dev/null`` so nothing else
can reach the pipes. Before any untrusted code runs it limits itself: address
space (baseline + ``memory_mb``), no core files, no file writes, no child
processes; CPU time is limited per request. Modules are compiled and loaded
here (loading is executing) and cached by their key (kind, sha256 of the
source, imports, filename): a module's source crosses once, later requests
name it by key. Results are converted to plain data here, under those limits,
and every error, ``BaseException`` included, comes back as a type name and a
truncated message.

Request (from the parent, which this process trusts): a 4-byte little-endian
length, then ``marshal`` of ``(key, name, args)``, or of ``(key, name, args,
kind, filename, imports, source)`` when the worker has not seen the module.
``args`` is already plain data. Reply (to the parent, which trusts nothing
from here): one line, ``v`` and the value's JSON (``plain.dumps``), or a JSON
object ``{"error_type", "error"}``; the parent parses it as JSON only and
checks it again with ``to_plain``.
"""
from __future__ import annotations

import json
import marshal
import math
import os
import resource
import sys
import time
import warnings
from typing import Any, BinaryIO

from ldengine.errors import SandboxCompileError
from ldengine.sandbox import result as r
from ldengine.sandbox.compiled import FUNCTION, CompiledModule, compile_function, compile_module
from ldengine.sandbox.plain import Limits, Plain, PlainDataError, dumps

VALUE = b"v"  # a reply line that starts with it carries a value: VALUE + plain.dumps(value)

NOT_LOADED = "NotLoaded"
BAD_REQUEST = "BadRequest"
MAX_MODULES = 256


def module_key(module: CompiledModule) -> str:
    """The cache key under which the worker keeps ``module``."""
    return "|".join((module.kind, module.source_hash, ",".join(module.allowed_imports),
                     module.filename))


def main(argv: list[str]) -> int:
    limits = Limits(**json.loads(argv[0]))
    warnings.simplefilter("ignore")  # a SyntaxWarning must not write anywhere
    requests, replies = _protocol_streams()
    _limit_resources(limits)
    _send(replies, json.dumps({"ready": True, "pid": os.getpid()}).encode())
    modules: dict[str, CompiledModule] = {}
    cpu = _CpuBudget(limits.cpu_s)
    while (request := _receive(requests)) is not None:
        _send(replies, _handle(request, modules, limits, cpu))
    return 0


def _receive(stream: BinaryIO) -> bytes | None:
    """One length-prefixed request, or None when the parent has gone."""
    header = stream.read(4)
    if len(header) < 4:
        return None
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    return data if len(data) == size else None


def _protocol_streams() -> tuple[BinaryIO, BinaryIO]:
    """Private copies of stdin/stdout for the protocol; fds 0-2 go to /dev/null."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return requests, replies


def _limit_resources(limits: Limits) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    baseline = _address_space()
    if baseline:  # Linux; elsewhere RLIMIT_AS is not measured here (see Limits)
        cap = baseline + limits.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _address_space() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class _CpuBudget:
    """Allows ``cpu_s`` more seconds of CPU from the start of each request.

    RLIMIT_CPU counts whole seconds, so a request gets between ``cpu_s`` and
    ``cpu_s + 1``; the limit is set again only when that second changes (a
    system call saved on most requests).
    """

    def __init__(self, cpu_s: float) -> None:
        self.cpu_s = max(cpu_s, 1.0)
        self.hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        self.soft = -1

    def renew(self) -> None:
        soft = math.ceil(time.process_time() + self.cpu_s)
        if soft != self.soft:
            resource.setrlimit(resource.RLIMIT_CPU, (soft, self.hard))
            self.soft = soft


def _send(stream: BinaryIO, reply: bytes) -> None:
    stream.write(reply + b"\n")
    stream.flush()


def _error(error_type: str, message: str) -> bytes:
    return _encode_error(error_type, r.error_text(error_type, message))


def _encode_error(error_type: str, error: str) -> bytes:
    return json.dumps({"error_type": error_type, "error": error}, separators=(",", ":")).encode()


def _handle(request: bytes, modules: dict[str, CompiledModule], limits: Limits, cpu: _CpuBudget) -> bytes:
    try:
        key, name, args, *source = marshal.loads(request)
        cpu.renew()
        module = _module(key, source, modules)
        if module is None:
            return _error(NOT_LOADED, "send the source")
        return _call(module, name, args, limits)
    except SandboxCompileError as exc:
        return _error(r.COMPILE_ERROR, str(exc))
    except MemoryError as exc:
        return _error(r.MEMORY_LIMIT, f"{r.describe(exc)[1]} (limit {limits.memory_mb} MiB)")
    except BaseException as exc:  # the called code's failure, whatever it is
        return _encode_error(*r.describe(exc))


def _module(key: str, source: list[Any], modules: dict[str, CompiledModule]) -> CompiledModule | None:
    if key in modules:
        return modules[key]
    if not source:
        return None
    kind, filename, imports, text = source
    compile_ = compile_function if kind == FUNCTION else compile_module
    module = compile_(text, filename, tuple(imports))
    if len(modules) >= MAX_MODULES:
        del modules[next(iter(modules))]
    modules[key] = module
    return module


def _call(module: CompiledModule, name: str, args: list[Plain], limits: Limits) -> bytes:
    value = module.runtime_function(name)(*args)
    try:
        return VALUE + dumps(value, limits).encode()
    except PlainDataError as exc:
        return _error(r.BAD_RETURN_VALUE, str(exc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
