"""Where LoRA adapters live and which one a task's agents use: the newest promoted adapter
whose trained functions are all still in the function base, unchanged."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ldengine.cache import cache_root, read_json
from ldengine.contracts import TaskBase
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.registry import Registry
from ldengine.signing import signed
from ldengine.taskkit import function_base_root, shipped
from ldengine.userdata import data_root

PACKAGE_ROOT = function_base_root()
PACKAGED_SHARED_DIR = PACKAGE_ROOT / "adapters"     # shipped adapters trained on several tasks' manuals


def default_adapter_dir(task: str) -> Path:
    """Where ``finetune`` saves a task's adapters: the user's data folder, never the package."""
    return data_root() / task / "adapters"


def quick_adapter_dir() -> Path:
    """Where ``finetune --quick`` saves its smoke runs when no ``--out`` is given: the cache (never a default)."""
    return cache_root() / "adapters"


def shared_adapter_dir() -> Path:
    """Where ``finetune`` saves adapters trained on several tasks' manuals."""
    return data_root() / "adapters"


def packaged_adapter_dir(task: str) -> Path:
    """The adapters that ship with the package for ``task``."""
    return PACKAGE_ROOT / task / "adapters"


def registered(task: TaskBase | str) -> TaskBase:
    """``task`` itself, or the registered task of that name (the plugins loaded to find it)."""
    return Registry.load().task(task) if isinstance(task, str) else task


def adapter_roots(task: TaskBase | str) -> list[Path]:
    """Where ``find_adapter`` looks for ``task``'s default adapters: the user's (the task's, then
    the several tasks'), then those its plugin ships (``task.adapters``), then the package's."""
    task = registered(task)
    plugin = [Path(task.adapters)] if task.adapters is not None else []
    return [default_adapter_dir(task.name), shared_adapter_dir(), *plugin, packaged_adapter_dir(task.name),
            PACKAGED_SHARED_DIR]


def vouched(folder: Path, task: TaskBase) -> bool:
    """Does ``folder`` ship with the package, or with ``task``'s installed plugin (its
    ``adapters`` folder)? Such an adapter needs no signature of this machine's key: the
    installation vouches for it (its weights are still checked against its manifest's hash)."""
    if shipped(folder):
        return True
    try:
        return task.adapters is not None and Path(folder).resolve().is_relative_to(Path(task.adapters).resolve())
    except OSError:
        return False


def find_adapter(task: TaskBase | str, base: FunctionBase, root: str | Path | None = None,
                 method: str = "ld") -> Path:
    """The newest promoted adapter of ``method`` (``ld``: selection, ``kd``: moves)
    trained on this task's functions: the task's own, or one trained on several tasks'
    manuals (``function_base/adapters/``). It fits when every function it was trained on
    is still in the base unchanged (new functions, e.g. a plugin's, compete through their
    manual); an older manifest without that list needs the exact base hash. A new adapter
    is promoted only by ``ldengine finetune --promote`` (its manifest says ``promoted``);
    the committed ones, older than that field, are. One in the user's data folder must be
    signed with this machine's key (``ldengine.signing``); those that ship with the package or
    with the task's plugin are vouched for by it (``vouched``)."""
    task = registered(task)
    roots = [Path(root)] if root else adapter_roots(task)
    name = task.name
    found, misfits = [], []
    for folder, data in _manifests(roots):
        if adapter_method(data) != method or data.get("promoted") is False:
            continue
        if not root and not vouched(folder, task) and not signed(data):
            # a folder the user's data holds but this machine did not sign: never made the default silently
            misfits.append(f"{folder} is not signed with this machine's key (not trained here, or its manifest "
                           "was changed); use it with --adapter DIR if you trust it")
            continue
        why = adapter_misfit(data, name, base)
        # KD and write adapters learnt answers in text (moves; functions for new rules), not the
        # manual's selection: any base of their task serves them.
        if why is None or (method != "ld" and data.get("task") == name):
            found.append((data.get("created", ""), folder))
        elif _learnt(data, name):
            misfits.append(f"{folder} was trained on another {name} function base ({why})")
    if found:
        return max(found)[1]
    hint = (f"run `ldengine finetune --task {name} --method {method}` (--from-adapter DIR continues an "
            f"adapter) or pass --adapter DIR")
    if misfits:
        raise LDEngineError(f"no {method} adapter fits this {name} function base (hash {base.teacher_hash[:12]}): "
                            f"{'; '.join(misfits)}; {hint}")
    raise LDEngineError(f"no {method} adapter in {' or '.join(map(str, roots))} was trained on this {name} "
                        f"function base (hash {base.teacher_hash[:12]}); {hint}")


def _manifests(roots: list[Path]) -> list[tuple[Path, dict]]:
    """(folder, manifest) of every adapter in ``roots``, in name order."""
    found = [(m.parent, read_json(m)) for r in roots if r.is_dir() for m in sorted(r.glob("*/manifest.json"))]
    return [(folder, data) for folder, data in found if isinstance(data, dict)]


def trained_on(manifest: dict, task: str, base: FunctionBase) -> bool:
    """Does the adapter fit ``base`` (``adapter_misfit`` finds nothing)?"""
    return adapter_misfit(manifest, task, base) is None


def adapter_misfit(manifest: dict, task: str, base: FunctionBase) -> str | None:
    """Why an adapter does not fit ``base`` (None when it does): the functions it learnt, and the
    facts it read (``trained_facts``), that changed or are gone; for an older manifest without
    the list of functions, the base hash."""
    trained = (manifest.get("trained_functions") or {}).get(task)
    if trained:
        read = (manifest.get("trained_facts") or {}).get(task) or {}
        changed = [n for n, digest in trained.items() if n in base.entries and base.entries[n].source_hash != digest]
        gone = [n for n in trained if n not in base.entries]
        # the facts it read in its queries: reworded or gone, its picks no longer rest on them (new ones,
        # a plugin's, are read like a new function's manual)
        changed += [f"fact {n}" for n, digest in read.items() if n in base.facts and base.facts[n].source_hash != digest]
        gone += [f"fact {n}" for n in read if n not in base.facts]
        words = [f"{len(names)} {label}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
                 for label, names in (("changed", changed), ("missing", gone)) if names]
        return "; ".join(words) or None
    hashes = manifest.get("function_base_hashes") or {task: manifest.get("function_base_hash")}
    if hashes.get(task) == base.teacher_hash:
        return None
    return f"base hash {hashes[task][:12]}" if hashes.get(task) else f"not trained on {task}"


def _learnt(manifest: dict, task: str) -> bool:
    """Was the adapter trained on ``task`` at all (so a misfit is worth naming)?"""
    return (task in (manifest.get("trained_functions") or {}) or task in (manifest.get("function_base_hashes") or {})
            or manifest.get("task") == task)


def adapter_method(manifest: dict) -> str:
    """kd, write, read, or ld (selection adapters say "ld-selection", or nothing when old)."""
    method = manifest.get("method")
    return method if method in ("kd", "write", "read") else "ld"


METHODS = ("ld", "kd", "write", "read")


@dataclass
class Listed:
    """An adapter as ``ldengine adapters list`` shows it."""
    name: str
    path: Path
    method: str
    origin: str             # "package", "plugin" (the task's plugin ships it), "data" (the user's) or "cache"
    signed: bool            # signed with this machine's key (shipped ones are vouched for by the package)
    promoted: bool
    default: bool           # the one find_adapter picks for its method
    manifest: dict

    @property
    def shipped(self) -> bool:
        """Ships with the package or the task's plugin (else the user's data folder or the cache holds it)."""
        return self.origin in ("package", "plugin")

    def line(self) -> str:
        where = self.origin + ("" if self.shipped or self.signed else " (unsigned)")
        notes = ", ".join(n for n, on in (("default", self.default), ("not promoted", not self.promoted)) if on)
        return (f"{self.name:<62} {self.method:<6} {where:<16} {self.steps!s:>5} steps  "
                f"{str(self.manifest.get('created', ''))[:19]:<19}  {notes}").rstrip()

    @property
    def steps(self) -> object:
        training = self.manifest.get("training")
        return (training.get("steps") if isinstance(training, dict) else None) or self.manifest.get("steps") or "?"


def listed(task: TaskBase | str, base: FunctionBase) -> list[Listed]:
    """Every adapter ``find_adapter`` could use for ``task`` (the user's, its plugin's and the
    package's), with the default of each method marked."""
    task = registered(task)
    defaults = set()
    for method in METHODS:
        try:
            defaults.add(Path(find_adapter(task, base, method=method)).resolve())
        except LDEngineError:
            continue        # no adapter of this method fits: none is marked
    out = []
    for folder, data in _manifests(adapter_roots(task)):
        inside = vouched(folder, task)
        origin = "package" if shipped(folder) else "plugin" if inside else "data"
        out.append(Listed(folder.name, folder, adapter_method(data), origin, inside or signed(data),
                          data.get("promoted") is not False, folder.resolve() in defaults, data))
    for folder, data in _manifests([quick_adapter_dir()]):     # smoke runs: listed so they can be found and removed
        if task.name in (data.get("tasks") or [data.get("task")]):
            out.append(Listed(folder.name, folder, adapter_method(data), "cache", signed(data), False, False, data))
    return out


def find_listed(task: TaskBase, base: FunctionBase, name: str) -> Listed:
    """The adapter of ``task`` named ``name`` (its folder's name), or an error naming the known ones."""
    items = listed(task, base)
    for item in items:
        if item.name == name:
            return item
    raise LDEngineError(f"no adapter {name!r} for {task.name} (known: {', '.join(i.name for i in items) or 'none'}; "
                        f"ldengine adapters list --task {task.name})")


def check_removable(item: Listed) -> None:
    """Only an adapter of the user's data folder can be removed; one that ships with the package is refused."""
    if item.shipped:
        raise LDEngineError(f"{item.name} ships with the {item.origin} ({item.path}); only adapters in the data folder "
                            "can be removed")


def remove_adapter(item: Listed) -> Path:
    """Delete an adapter folder of the user's data (``check_removable`` first)."""
    check_removable(item)
    shutil.rmtree(item.path)
    return item.path
