"""Stored generated code: what ``ldengine generated`` lists, shows, verifies and removes.

Two kinds of code were written by a model and stored with their provenance: the
student's functions for emergencies (``<data>/TASK/emergencies/NAME.py`` + ``NAME.json``
in the user's data folder, and those that ship under ``function_base/TASK/emergencies/``)
and the teacher's distilled versions (``<data>/TASK/versions/NAME/`` with
``provenance.json``). Each is tamper-evident: its provenance records the sha256 of every
file (a stored function's is signed with this machine's key too), and a file that no longer
matches is refused wherever it would load. ``verify`` checks those
hashes and runs the verification again: an emergency function against its rule
on the whole move domain and fresh random states, a version through the checks
``ldengine distill`` ran (examples, stages, games).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ldengine.distill.check import check_module
from ldengine.emergency.rule import Instance, stored_rule
from ldengine.emergency.store import check_stored, function_text, read_stored_provenance, stored_modules
from ldengine.emergency.verify import game_inputs, verify as verify_function
from ldengine.errors import LDEngineError, UnknownNameError
from ldengine.functionbase import (PROVENANCE, FunctionBase, StoredCodeChanged, base_for, check_version_files,
                                   file_sha256, read_provenance, version_names, versions_dir)
from ldengine.manual import ManualEntry, entries_from_source
from ldengine.sandbox import IsolatedSandbox
from ldengine.taskkit import shipped

if TYPE_CHECKING:
    from ldengine.contracts import EmergencyKind
    from ldengine.emergency.verify import GameInputs
    from ldengine.registry import Registry

EMERGENCY, VERSION = "emergency", "version"


@dataclass
class Stored:
    """One stored piece of generated code; ``problem`` says why it cannot be trusted (None:
    every recorded hash holds)."""
    what: str                   # "emergency" (a student's function) or "version" (a distilled base)
    name: str
    task: str
    path: Path                  # the module (emergency) or the folder (version)
    provenance: dict = field(default_factory=dict)
    problem: str | None = None

    @property
    def files(self) -> list[Path]:
        if self.what == EMERGENCY:
            return [self.path, self.path.with_suffix(".json")]
        return sorted(p for p in self.path.iterdir() if p.is_file())

    def summary(self) -> str:
        p = self.provenance
        if self.what == EMERGENCY:
            custom = p.get("custom_rule")
            words = custom.get("text") if isinstance(custom, dict) else None
            rule = f"the rule {words!r}" if words else f"{p.get('kind', '?')} {_short_json(p.get('params'))}"
            return (f"{p.get('function', '?')} for {rule}, "
                    f"attempt {p.get('accepted_attempt', '?')}, model {p.get('model', '?')}"
                    + (", ships with the package" if shipped(self.path) else ""))
        teacher = p.get("teacher", {})
        return (f"{len(p.get('functions', []))} functions, {p.get('rounds', '?')} round(s), teacher "
                f"{teacher.get('model', '?')}, created {p.get('created', '?')}")

    def record(self) -> dict:
        return {"what": self.what, "name": self.name, "task": self.task, "path": str(self.path),
                "status": "ok" if self.problem is None else "changed", "problem": self.problem,
                "files": [{"file": f.name, "sha256": file_sha256(f)} for f in self.files if f.is_file()],
                "summary": self.summary()}


def stored(registry: Registry, task: str | None = None) -> list[Stored]:
    """Every stored emergency function and distilled version of ``task`` (None: every task),
    with its hashes checked."""
    tasks = [task] if task else sorted(registry.tasks)
    return [item for t in tasks for item in _emergencies(t) + _versions(t)]


def find(registry: Registry, name: str, task: str | None = None) -> Stored:
    """The stored item called ``name`` (an emergency file's stem or a version's name)."""
    found = [item for item in stored(registry, task) if item.name == name]
    if not found:
        known = ", ".join(item.name for item in stored(registry, task)) or "none"
        raise UnknownNameError(f"no stored generated code {name!r}{f' for {task}' if task else ''} "
                               f"(known: {known}; ldengine generated list)")
    if len(found) > 1:
        raise LDEngineError(f"{name!r} is stored for several tasks ({', '.join(i.task for i in found)}); "
                            "say which with --task")
    return found[0]


def find_function(registry: Registry, name: str, task: str | None = None) -> tuple[Stored, ManualEntry] | None:
    """The stored emergency function called ``name`` (its file's stem, or its def's name when
    one stored file alone has it) and its manual entry, read with ``ast`` (never executed);
    None if there is none. A file that no longer has its recorded sha256 is refused."""
    items = [i for i in stored(registry, task) if i.what == EMERGENCY]
    found = [i for i in items if i.name == name] or [i for i in items if i.provenance.get("function") == name]
    if not found:
        return None
    if len(found) > 1:
        raise LDEngineError(f"{name!r} is the function of several stored files "
                            f"({', '.join(i.name for i in found)}); name one")
    item = found[0]
    if item.problem:
        raise StoredCodeChanged(item.problem)
    entries = entries_from_source(item.path.read_text(encoding="utf-8"), item.path.name, item.task, "generated")
    entry = next((e for e in entries if e.def_name == item.provenance.get("function")), None)
    if entry is None:
        raise LDEngineError(f"{item.path.name} defines no function {item.provenance.get('function')!r}")
    return item, entry


def _emergencies(task: str) -> list[Stored]:
    out = []
    for path in stored_modules(task):
        item = Stored(EMERGENCY, path.stem, task, path)
        try:
            item.provenance = read_stored_provenance(path)
            check_stored(path, item.provenance)
        except StoredCodeChanged as exc:
            item.problem = str(exc)
        out.append(item)
    return out


def _versions(task: str) -> list[Stored]:
    out = []
    for name in version_names(task):
        item = Stored(VERSION, name, task, versions_dir(task) / name)
        try:
            item.provenance = read_provenance(task, name)
            check_version_files(task, name)
        except LDEngineError as exc:
            item.problem = str(exc)
        out.append(item)
    return out


# ---- verifying again -------------------------------------------------------------------------

@dataclass
class Verdict:
    item: Stored
    passed: bool
    lines: list[str]


def verify(registry: Registry, item: Stored, games: int | None = None) -> Verdict:
    """The item's hashes, then its verification run again (see the module's docstring)."""
    if item.problem:
        return Verdict(item, False, [item.problem])
    if item.what == EMERGENCY:
        return _verify_emergency(registry, item)
    return _verify_version(registry, item, games)


def _verify_emergency(registry: Registry, item: Stored) -> Verdict:
    kind = _kind(registry, item)
    if kind is None:
        return Verdict(item, True, ["hashes match; verification not run again: its rule is not registered and "
                                    "its provenance does not say how to check it"])
    params, name = item.provenance.get("params") or {}, item.provenance.get("function", "")
    source = function_text(item.path.read_text(encoding="utf-8"), name)
    with IsolatedSandbox() as sandbox:
        result = verify_function(kind, params, source, name, sandbox, game=_game(registry, item.task, kind, params))
    line = f"{result.line()} (fresh seed {result.seed}, {result.seconds:.2f} s)"
    return Verdict(item, result.passed, [f"hashes match; verified again: {line}"])


def _game(registry: Registry, task: str, kind: EmergencyKind, params: dict) -> GameInputs | None:
    """The inputs a game of ``task`` with ``kind`` in force feeds the function (None: none)."""
    game_task = registry.tasks[task].obj if task in registry.tasks else None
    if game_task is None or game_task.with_emergency is None:
        return None
    try:
        in_force = game_task.with_emergency(Instance(kind, params))
        return game_inputs(in_force, FunctionBase.build(task, registry.modules_for(task)), kind)
    except Exception:  # a rule the referee cannot apply to every move (a user's examples): synthetic inputs
        return None


def _kind(registry: Registry, item: Stored) -> EmergencyKind | None:
    """The rule the function was written for: registered, or rebuilt from the provenance."""
    return stored_rule(registry, item.task, item.provenance)


def _verify_version(registry: Registry, item: Stored, games: int | None) -> Verdict:
    try:
        base_for(registry, item.task, item.name)         # the recorded base hash
    except LDEngineError as exc:
        return Verdict(item, False, [str(exc)])
    games = games or (item.provenance.get("check_games") or {}).get("games") or 5
    task = registry.task(item.task)
    sources = [p.read_text(encoding="utf-8") for p in sorted(item.path.glob("*.py"))]
    checks = [c for source in sources for c in check_module(registry, task, source, games)]
    lines = ["hashes match; checks run again: " + ", ".join(f"{c.name} {'ok' if c.passed else 'FAILED'}"
                                                           for c in checks)]
    lines += [f"  {c.name}: {d}" for c in checks if not c.passed for d in c.details[:2]]
    return Verdict(item, all(c.passed for c in checks), lines)


# ---- removing --------------------------------------------------------------------------------

def remove(item: Stored) -> list[Path]:
    """Delete the item's files (an emergency's module and provenance; a version's folder)."""
    files = item.files
    if item.what == EMERGENCY:
        if shipped(item.path):
            raise LDEngineError(f"{item.path.name} ships with the package ({item.path.parent}); it is not the "
                                "user's to remove (a function stored for the same rule replaces it)")
        for path in files:
            path.unlink(missing_ok=True)
    else:
        if not (item.path / PROVENANCE).is_file():
            raise LDEngineError(f"{item.path} is not a stored version; nothing removed")
        shutil.rmtree(item.path)
    return files


def _short_json(value: object) -> str:
    text = json.dumps(value, sort_keys=True) if value is not None else "{}"
    return text if len(text) <= 60 else text[:57] + "..."
