"""The function base of one task: manual entries plus their sandboxed code.

Modules arrive as source text from plugins (``ldengine_register_functions``);
each is compiled by the sandbox, never imported, and every call goes through
``Sandbox.call``. Generated (emergency) functions are untrusted: they are
added with ``add_generated``, load and run only in an ``IsolatedSandbox``
worker, and never execute in this process. The base's hash covers every function's source, so results
and indexes can say exactly which base produced them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from ldengine.errors import ManualError, SandboxCompileError, UnknownNameError
from ldengine.manual import ManualEntry, entries_from_source
from ldengine.registry import ModuleSource
from ldengine.sandbox import CompiledModule, Sandbox, SandboxResult, compile_module


@dataclass
class FunctionBase:
    task: str
    entries: dict[str, ManualEntry]
    modules: dict[str, CompiledModule]
    sandbox: Sandbox
    _oracles: dict = field(default_factory=dict, repr=False)
    untrusted: set = field(default_factory=set)     # module filenames run only in the isolated worker
    isolated: Any = field(default=None, repr=False)

    @classmethod
    def build(cls, task: str, sources: list[ModuleSource], sandbox: Sandbox | None = None) -> "FunctionBase":
        entries, modules = {}, {}
        for src in sources:
            try:
                modules[src.filename] = compile_module(src.source, filename=src.filename)
            except SandboxCompileError as exc:
                raise ManualError(f"plugin {src.plugin!r}, {src.filename}: {exc}") from None
            for entry in entries_from_source(src.source, src.filename, task, src.plugin):
                name = _unique(entry.name, entries)
                entries[name] = entry if name == entry.name else replace(entry, name=name)
        return cls(task, entries, modules, sandbox or Sandbox())

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, name: str) -> ManualEntry:
        if name not in self.entries:
            raise UnknownNameError(f"no function {name!r} in the {self.task} base "
                                   f"(try: ldengine functions list --task {self.task})")
        return self.entries[name]

    def call(self, name: str, *args) -> SandboxResult:
        entry = self.entry(name)
        if entry.module in self.untrusted:
            return self._isolated().call(self.modules[entry.module], entry.def_name, *args)
        return self.sandbox.call(self.modules[entry.module], entry.def_name, *args)

    def add_generated(self, source: str, filename: str, plugin: str = "generated") -> list[ManualEntry]:
        """Add an untrusted module (checked and compiled here, loaded only in the worker)."""
        try:
            module = compile_module(source, filename=filename, load=False)
        except SandboxCompileError as exc:
            raise ManualError(f"{filename}: {exc}") from None
        added = []
        for entry in entries_from_source(source, filename, self.task, plugin):
            name = _unique(entry.name, self.entries)
            self.entries[name] = entry if name == entry.name else replace(entry, name=name)
            added.append(self.entries[name])
        self.modules[filename] = module
        self.untrusted.add(filename)
        self._oracles.clear()
        return added

    def _isolated(self) -> Any:
        if self.isolated is None:
            from ldengine.sandbox import IsolatedSandbox
            self.isolated = IsolatedSandbox(audit=self.sandbox.audit)
        return self.isolated

    def for_stage(self, stage: str) -> list[ManualEntry]:
        return [e for e in self.entries.values() if e.stage == stage]

    def oracle(self, stage: str) -> ManualEntry:
        """The one function whose manual names this stage (the expert's choice)."""
        if stage not in self._oracles:
            found = self.for_stage(stage)
            if len(found) != 1:
                names = ", ".join(e.name for e in found) or "none"
                raise ManualError(f"{self.task}: stage {stage!r} needs exactly one function, found {names}")
            self._oracles[stage] = found[0]
        return self._oracles[stage]

    @property
    def hash(self) -> str:
        """Pins every function of the base, generated ones included."""
        return _hash(self.entries)

    @property
    def teacher_hash(self) -> str:
        """Pins the teacher's functions only: what an adapter was trained on."""
        return _hash({n: e for n, e in self.entries.items() if e.module not in self.untrusted})


def _hash(entries: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(entries):
        h.update(f"{name}:{entries[name].source_hash}\n".encode())
    return h.hexdigest()


def _unique(name: str, taken: dict) -> str:
    """A duplicate name gets a version suffix rather than overwriting (name_v2, name_v3, ...)."""
    if name not in taken:
        return name
    n = 2
    while f"{name}_v{n}" in taken:
        n += 1
    return f"{name}_v{n}"

