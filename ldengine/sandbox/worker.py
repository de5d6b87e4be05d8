"""The isolated worker: runs untrusted function bases under OS limits.

Started by ``IsolatedSandbox`` as ``python -S -m ldengine.sandbox.worker LIMITS``
in a new session. It speaks JSON Lines: one request per line on stdin, one
reply per line on stdout; fds 0-2 are then pointed at ``/dev/null`` so
nothing else can reach the pipes. Before any untrusted code runs it limits
itself: address space (baseline + ``memory_mb``), no core files, no file
writes, no child processes; CPU time is limited per request. Modules are
compiled and loaded here (loading is executing) and cached by source hash.
Results are converted to plain data here, under those limits, and every
error, ``BaseException`` included, comes back as a type name and a
truncated message.

Request: ``{"key", "kind", "filename", "imports", "name", "args"[, "source"]}``.
Reply: ``{"value": ...}`` or ``{"error_type", "error"}``.
"""
from __future__ import annotations

import json
import math
import os
import resource
import sys
import warnings
from typing import Any, BinaryIO

from ldengine.errors import SandboxCompileError
from ldengine.sandbox import result as r
from ldengine.sandbox.compiled import FUNCTION, CompiledModule, compile_function, compile_module
from ldengine.sandbox.plain import Limits, PlainDataError, from_wire, to_plain, to_wire

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
    _send(replies, {"ready": True, "pid": os.getpid()})
    modules: dict[str, CompiledModule] = {}
    for line in requests:
        _send(replies, _handle(line, modules, limits))
    return 0


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


def _limit_cpu(cpu_s: float) -> None:
    """Allow ``cpu_s`` more seconds of CPU from now (RLIMIT_CPU counts whole seconds)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + max(cpu_s, 1.0))
    resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.getrlimit(resource.RLIMIT_CPU)[1]))


def _send(stream: BinaryIO, reply: dict[str, Any]) -> None:
    try:
        data = json.dumps(reply, separators=(",", ":")).encode()
    except BaseException as exc:  # e.g. an int too long to print
        data = json.dumps(_error(r.BAD_RETURN_VALUE, f"cannot encode: {r.describe(exc)[1]}")).encode()
    stream.write(data + b"\n")
    stream.flush()


def _error(error_type: str, message: str) -> dict[str, str]:
    return {"error_type": error_type, "error": r.error_text(error_type, message)}


def _handle(line: bytes, modules: dict[str, CompiledModule], limits: Limits) -> dict[str, Any]:
    try:
        request = json.loads(line, object_hook=from_wire)
        _limit_cpu(limits.cpu_s)
        module = _module(request, modules)
        if module is None:
            return _error(NOT_LOADED, "send the source")
        return _call(module, request["name"], request["args"], limits)
    except SandboxCompileError as exc:
        return _error(r.COMPILE_ERROR, str(exc))
    except MemoryError as exc:
        return _error(r.MEMORY_LIMIT, f"{r.describe(exc)[1]} (limit {limits.memory_mb} MiB)")
    except BaseException as exc:  # the called code's failure, whatever it is
        return dict(zip(("error_type", "error"), r.describe(exc)))


def _module(request: dict[str, Any], modules: dict[str, CompiledModule]) -> CompiledModule | None:
    key = request["key"]
    if key in modules:
        return modules[key]
    if "source" not in request:
        return None
    compile_ = compile_function if request["kind"] == FUNCTION else compile_module
    module = compile_(request["source"], request["filename"], tuple(request["imports"]))
    if len(modules) >= MAX_MODULES:
        del modules[next(iter(modules))]
    modules[key] = module
    return module


def _call(module: CompiledModule, name: str, args: list[Any], limits: Limits) -> dict[str, Any]:
    value = module.runtime_function(name)(*args)
    try:
        return {"value": to_wire(to_plain(value, limits))}
    except PlainDataError as exc:
        return _error(r.BAD_RETURN_VALUE, str(exc))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
