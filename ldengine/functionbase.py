"""The function base of one task: manual entries plus their sandboxed code.

Modules arrive as source text from plugins (``ldengine_register_functions``);
each is compiled by the sandbox, never imported. Every call runs in an
``IsolatedSandbox`` worker (a shared pool of warm workers) by default: the
shipped base too, since isolation costs little per call (benchmarks/RESULTS.md,
"Isolation"). ``$LDENGINE_SANDBOX=inprocess`` (or ``build(..., inprocess=True)``)
runs the built-in plugins' modules in this process instead, for trusted code
only: everything else (generated functions added with ``add_generated``,
stored distilled versions, third-party plugins' modules) runs only in the
worker whatever the setting, because the in-process ``Sandbox`` cannot stop a
segfault, a memory bomb or a C-level computation. The base's hash covers every function's source, so results
and indexes can say exactly which base produced them.

A base can also come from a stored *version* (``ldengine distill`` writes them):
``<data_root>/TASK/versions/VERSION/`` (the user's data folder, ``ldengine.userdata``) holds
its module(s) and ``provenance.json``;
``base_for(registry, task, version)`` builds it instead of the plugins' modules.
``$LDENGINE_FUNCTION_BASE_DIR`` moves the store (tests use a temporary folder).
A version is tamper-evident: its provenance records the sha256 of every module
file's whole text (constants and imports included) and a base hash that pins them
too; a file that was changed, added or removed afterwards is refused on load
(``StoredCodeChanged``, one line naming the file).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Container

from ldengine.errors import LDEngineError, ManualError, SandboxCompileError, UnknownNameError
from ldengine.manual import Fact, ManualEntry, entries_from_source, facts_from_source
from ldengine.plugins import DEFAULT_PLUGINS
from ldengine.registry import ModuleSource
from ldengine.sandbox import CompiledModule, IsolatedSandbox, Sandbox, SandboxResult, compile_module
from ldengine.signing import signed, unsigned_reason
from ldengine.userdata import data_root

if TYPE_CHECKING:
    from ldengine.registry import Registry
    from ldengine.sandbox.isolated import IsolatedSandbox as Isolated

log = logging.getLogger(__name__)

SANDBOX_ENV = "LDENGINE_SANDBOX"
ISOLATED, INPROCESS = "isolated", "inprocess"


def inprocess_requested() -> bool:
    """Whether ``$LDENGINE_SANDBOX`` asks for in-process calls of the trusted (built-in) modules."""
    mode = os.environ.get(SANDBOX_ENV, ISOLATED).strip().lower() or ISOLATED
    if mode not in (ISOLATED, INPROCESS):
        raise LDEngineError(f"${SANDBOX_ENV} must be {ISOLATED!r} (the default) or {INPROCESS!r}, not {mode!r}")
    return mode == INPROCESS


@dataclass
class FunctionBase:
    task: str
    entries: dict[str, ManualEntry]
    modules: dict[str, CompiledModule]
    sandbox: Sandbox
    untrusted: set = field(default_factory=set)     # generated module filenames (add_generated)
    isolated: Isolated | None = field(default=None, repr=False)
    pinned: dict = field(default_factory=dict, repr=False)  # file name -> sha256 of its whole text (versions)
    _last_oracle: tuple = field(default=(None, None, None, None), repr=False)
    _last_facts: tuple = field(default=(None, None, None, None), repr=False)
    inprocess: set = field(default_factory=set)     # module filenames run in ``sandbox``; the rest isolated
    facts: dict = field(default_factory=dict)       # name -> Fact, in the base's order (``fact_`` defs)
    dropped: dict = field(default_factory=dict)     # (module, def) of a failed third-party predicate -> why

    @classmethod
    def build(cls, task: str, sources: list[ModuleSource], sandbox: Sandbox | None = None,
              *, inprocess: bool | None = None) -> "FunctionBase":
        """The base of ``task`` from module sources. ``inprocess`` (default: ``$LDENGINE_SANDBOX``)
        runs the built-in plugins' modules in ``sandbox``; all others always run isolated."""
        trusted_inprocess = inprocess_requested() if inprocess is None else inprocess
        entries: dict[str, ManualEntry] = {}
        modules: dict[str, CompiledModule] = {}
        facts: dict[str, Fact] = {}
        local: set[str] = set()
        for src in sources:
            here = trusted_inprocess and src.plugin in DEFAULT_PLUGINS
            try:  # loading is executing: a module headed for the worker loads there
                modules[src.filename] = compile_module(src.source, filename=src.filename, load=here)
            except SandboxCompileError as exc:
                raise ManualError(f"plugin {src.plugin!r}, {src.filename}: {exc}") from None
            if here:
                local.add(src.filename)
            for entry in entries_from_source(src.source, src.filename, task, src.plugin):
                name = _unique(entry.name, entries)
                entries[name] = entry if name == entry.name else replace(entry, name=name)
            for fact in facts_from_source(src.source, src.filename, src.plugin):
                facts[_unique(fact.name, facts)] = fact
        return cls(task, entries, modules, sandbox or Sandbox(), inprocess=local, facts=facts)

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, name: str) -> ManualEntry:
        if name not in self.entries:
            raise UnknownNameError(f"no function {name!r} in the {self.task} base "
                                   f"(try: ldengine functions list --task {self.task})")
        return self.entries[name]

    def call(self, name: str, *args) -> SandboxResult:
        """Run function ``name`` on ``args``: in ``sandbox`` for a module in ``inprocess``, else isolated."""
        entry = self.entry(name)
        return self._runner(entry.module).call(self.modules[entry.module], entry.def_name, *args)

    def _runner(self, module: str) -> Sandbox | Isolated:
        return self.sandbox if module in self.inprocess and module not in self.untrusted else self._isolated()

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
        return added

    def _isolated(self) -> Isolated:
        if self.isolated is None:
            self.isolated = IsolatedSandbox(audit=self.sandbox.audit, shared=True)
        return self.isolated

    def for_stage(self, stage: str) -> list[ManualEntry]:
        return [e for e in self.entries.values() if e.stage == stage]

    def oracle(self, stage: str, state: object = None) -> ManualEntry:
        """The right function for ``stage`` given its input ``state`` (the expert's choice).

        A stage with one function needs no state. With alternatives, the first (in
        the base's order) whose ``when_`` predicate holds on ``state`` wins, run in
        the sandbox like any function (a predicate that fails counts as False);
        when none holds, the stage's one function without a predicate (its default).
        """
        found = self.for_stage(stage)
        if len(found) == 1:
            return found[0]
        if not found:
            raise ManualError(f"{self.task}: no function for stage {stage!r} "
                              f"(try: ldengine functions list --task {self.task})")
        if self._last_oracle[:2] == (stage, id(state)) and self._last_oracle[2] is state:
            return self._last_oracle[3]     # the selector and the loop ask for the same input
        defaults = [e for e in found if not e.predicate]
        if len(defaults) > 1:
            raise ManualError(f"{self.task}: stage {stage!r} has several functions without a When: field and "
                              f"a when_NAME predicate ({', '.join(e.name for e in defaults)}); all but one "
                              "must say when they apply")
        right = next((e for e in found if e.predicate and state is not None and self.applies(e, state)),
                     defaults[0] if defaults else found[0])
        self._last_oracle = (stage, id(state), state, right)
        return right

    def applies(self, entry: ManualEntry, state: object) -> bool:
        """Whether ``entry``'s ``when_`` predicate holds on ``state`` (True for a default)."""
        if not entry.predicate:
            return True
        return self._predicate(entry.module, entry.predicate, entry.plugin, state)

    def _predicate(self, module: str, name: str, plugin: str, state: object) -> bool:
        """Whether predicate ``name`` of ``module`` holds on ``state``. One the engine does not ship
        (generated, or a third-party plugin's) that fails is quarantined at its first failure, with
        one line to the log: from then on it counts as False without being called (a predicate
        that killed its worker cost a new worker at every step)."""
        key = (module, name)
        if key in self.dropped:
            return False
        result = self._runner(module).call(self.modules[module], name, state)
        if not result.ok and (module in self.untrusted or plugin not in DEFAULT_PLUGINS):
            self.dropped[key] = result.error or "failed"
            log.warning("%s of %s (%s) quarantined after its first failure (%s); it counts as no from now on",
                        name, module, plugin, (result.error or "failed")[:200])
        return result.ok and result.value is True

    def facts_for(self, stage: str) -> list[Fact]:
        """The facts a query at ``stage`` states, in the base's order."""
        return [f for f in self.facts.values() if f.stage == stage]

    def fact_values(self, stage: str, state: object) -> list[tuple[Fact, bool]]:
        """Each fact of ``stage`` with its value on ``state`` (the stage's input), computed in the
        sandbox like every function of the base; a fact whose predicate fails or answers anything
        but True is stated as no."""
        if self._last_facts[:2] == (stage, id(state)) and self._last_facts[2] is state:
            return self._last_facts[3]      # the retriever's query and the student's ask for the same input
        out = []
        for fact in self.facts_for(stage):
            out.append((fact, self._predicate(fact.module, fact.def_name, fact.plugin, state)))
        self._last_facts = (stage, id(state), state, out)
        return out

    def problems(self, stages: Collection[str], own: Container[str] = ()) -> list[str]:
        """What keeps a function from ever being played: a stage outside ``stages`` (the
        task's pipeline; the task's ``own`` plugins keep such functions as distractors on
        purpose), or a second default in a stage with alternatives."""
        out = []
        for e in self.entries.values():
            if e.stage not in stages and e.plugin not in own:
                out.append(f"{e.name} ({e.plugin}): stage {e.stage!r} is not in the {self.task} pipeline "
                           f"({', '.join(stages)}); it is only a distractor and is never played")
        for stage in stages:
            defaults = [e.name for e in self.for_stage(stage) if not e.predicate]
            if len(defaults) > 1:
                out.append(f"stage {stage!r} has {len(defaults)} functions without a When: field and a "
                           f"when_NAME predicate ({', '.join(defaults)}); the oracle cannot choose among them")
        return out

    @property
    def hash(self) -> str:
        """Pins every function of the base, generated ones included, and the whole text of
        its ``pinned`` modules (a stored version's: their constants too)."""
        return _hash(self.entries, self.pinned, self.facts)

    @property
    def teacher_hash(self) -> str:
        """Pins the teacher's functions only: what an adapter was trained on."""
        return _hash({n: e for n, e in self.entries.items() if e.module not in self.untrusted}, self.pinned,
                     {n: f for n, f in self.facts.items() if f.module not in self.untrusted})


def _hash(entries: dict, pinned: dict | None = None, facts: dict | None = None) -> str:
    """Each function's source hash by name, each fact's (its words are what a student reads);
    then, for ``pinned`` modules (file name -> sha256 of the whole text), those."""
    h = hashlib.sha256()
    for name in sorted(entries):
        h.update(f"{name}:{entries[name].source_hash}\n".encode())
    for name, fact in sorted((facts or {}).items()):
        h.update(f"fact {name}:{fact.source_hash}\n".encode())
    for name, digest in sorted((pinned or {}).items()):
        h.update(f"file {name}:{digest}\n".encode())
    return h.hexdigest()


def _unique(name: str, taken: dict) -> str:
    """A duplicate name gets a version suffix rather than overwriting (name_v2, name_v3, ...)."""
    if name not in taken:
        return name
    n = 2
    while f"{name}_v{n}" in taken:
        n += 1
    return f"{name}_v{n}"


# ---- stored versions (written by ``ldengine distill``) ---------------------------------------

PROVENANCE = "provenance.json"
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def versions_dir(task: str) -> Path:
    """``$LDENGINE_FUNCTION_BASE_DIR/TASK/versions``, else ``<data_root>/TASK/versions`` (the
    user's data folder: a run never writes into the package)."""
    root = os.environ.get("LDENGINE_FUNCTION_BASE_DIR")
    return (Path(root) if root else data_root()) / task / "versions"


def version_names(task: str) -> list[str]:
    """The stored versions of ``task`` (folders with a provenance file), sorted."""
    folder = versions_dir(task)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / PROVENANCE).is_file())


def read_provenance(task: str, version: str) -> dict:
    """A stored version's ``provenance.json``."""
    path = _version_folder(task, version) / PROVENANCE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LDEngineError(f"{path}: unreadable provenance ({exc})") from None


def load_version(task: str, version: str) -> list[ModuleSource]:
    """The modules of a stored version, as text (compiled by the sandbox, never imported),
    each checked against the sha256 its provenance recorded."""
    folder = _version_folder(task, version)
    files = sorted(folder.glob("*.py"))
    if not files:
        raise LDEngineError(f"function base version {version!r} of {task} has no module in {folder}")
    check_version_files(task, version)
    return [ModuleSource(task, f.read_text(encoding="utf-8"), f"{task}/versions/{version}/{f.name}",
                         f"version {version}") for f in files]


def base_for(registry: Registry, task: str, version: str | None = None, sandbox: Sandbox | None = None) -> FunctionBase:
    """The plugins' function base of ``task``, or, with ``version``, that stored version's;
    a version whose files or functions no longer hash to what its provenance recorded is refused."""
    if version is None:
        return FunctionBase.build(task, registry.modules_for(task), sandbox)
    sources = load_version(task, version)
    base = FunctionBase.build(task, sources, sandbox)
    provenance = read_provenance(task, version)
    if provenance.get("hash_covers") == "modules":
        base.pinned = {Path(s.filename).name: text_sha256(s.source) for s in sources}
    recorded = provenance.get("base_hash")
    if recorded != base.hash:
        raise StoredCodeChanged(f"function base version {version!r} of {task} was changed after it was stored "
                                f"(hash {base.hash[:12]}, provenance says {str(recorded)[:12]}); distil it again "
                                f"or remove it: ldengine generated remove {version} --task {task}")
    return base


def version_hash(base: FunctionBase, files: dict[str, str]) -> str:
    """The hash a version of ``base`` made of ``files`` (file name -> whole text) is stored
    under: its functions and every file's whole text."""
    return _hash(base.entries, {name: text_sha256(text) for name, text in files.items()})


# ---- tamper evidence for stored generated code --------------------------------------------------

class StoredCodeChanged(LDEngineError):
    """A stored file of generated code no longer has the sha256 its provenance recorded."""


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_file(path: Path, recorded: str | None, remedy: str) -> None:
    """Refuse ``path`` in one line unless its bytes hash to ``recorded``."""
    if not path.is_file():
        raise StoredCodeChanged(f"{path} is missing, but its provenance records it; {remedy}")
    actual = file_sha256(path)
    if actual != recorded:
        said = f"its provenance records {recorded[:12]}" if recorded else "its provenance records no sha256 for it"
        raise StoredCodeChanged(f"{path} was changed after it was stored (sha256 {actual[:12]}, {said}); {remedy}")


def check_version_files(task: str, version: str) -> list[Path]:
    """Every module file of a stored version against ``modules[].sha256`` of its provenance,
    once the provenance is known to be signed with this machine's key (a provenance rewritten
    together with its hashes is not); a file added to the folder afterwards is refused too.
    Returns the files checked."""
    folder = _version_folder(task, version)
    remedy = f"restore it, or remove the version: ldengine generated remove {version} --task {task}"
    provenance = read_provenance(task, version)
    if not signed(provenance):
        raise StoredCodeChanged(f"{unsigned_reason(str(folder / PROVENANCE))}; distil it again, or remove it: "
                                f"ldengine generated remove {version} --task {task}")
    recorded: dict[str, str | None] = {}      # file name -> the sha256 its provenance records
    for module in provenance.get("modules") or []:
        if not isinstance(module, dict):
            continue
        name = module.get("file")
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise StoredCodeChanged(f"{folder / PROVENANCE} names a module {name!r} outside its folder; {remedy}")
        recorded[name] = module.get("sha256")
    for path in sorted(folder.glob("*.py")):
        if path.name not in recorded:
            raise StoredCodeChanged(f"{path} is not in its version's provenance (added after it was stored); "
                                    f"{remedy}")
    for name, digest in recorded.items():
        check_file(folder / name, digest, remedy)
    return [folder / name for name in recorded]


def _version_folder(task: str, version: str) -> Path:
    folder = versions_dir(task) / version
    if not _VERSION_NAME.fullmatch(version) or not (folder / PROVENANCE).is_file():
        known = ", ".join(version_names(task)) or "none"
        raise UnknownNameError(f"no stored function base version {version!r} for {task} (known: {known}; "
                               f"ldengine functions versions --task {task})")
    return folder
