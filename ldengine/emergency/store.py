"""Verified functions and their provenance: saved atomically in the user's data folder
(``<data_root>/TASK/emergencies``, or ``$LDENGINE_EMERGENCY_DIR/TASK``), their provenance signed
with this machine's key (``ldengine.signing``); refused when changed or unsigned, verified again
on load. The functions that ship with the package (``function_base/TASK/emergencies``) are read
too, checked against their recorded hashes; a run never writes there."""
from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from ldengine.cache import write_atomic
from ldengine.contracts import EmergencyKind
from ldengine.emergency.verify import GameInputs, verify
from ldengine.emergency.write import Written
from ldengine.errors import LDEngineError
from ldengine.functionbase import StoredCodeChanged, check_file, text_sha256
from ldengine.sandbox import IsolatedSandbox
from ldengine.signing import sign, signed, unsigned_reason
from ldengine.taskkit import function_base_root, shipped
from ldengine.userdata import data_root

FUNCTION_ROOT = function_base_root()


def store_dir(task: str) -> Path:
    """Where verified functions are stored: ``$LDENGINE_EMERGENCY_DIR/<task>``, else
    ``<data_root>/<task>/emergencies``."""
    root = os.environ.get("LDENGINE_EMERGENCY_DIR")
    return Path(root) / task if root else data_root() / task / "emergencies"


def shipped_dir(task: str) -> Path:
    """The functions that ship with the package (read, never written by a run)."""
    return FUNCTION_ROOT / task / "emergencies"


def store_dirs(task: str) -> list[Path]:
    """Where stored functions are looked for: the user's store, then the shipped ones."""
    return [store_dir(task), shipped_dir(task)]


def params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def module_path(kind: EmergencyKind, params: dict, folder: Path | None = None) -> Path:
    """The stored module of this instance in ``folder``, else the first of ``store_dirs`` that
    holds one (the user's store when none does)."""
    name = f"{kind.name}-{params_key(params)}.py"
    if folder is not None:
        return folder / name
    return next((d / name for d in store_dirs(kind.task) if (d / name).is_file()), store_dir(kind.task) / name)


def module_source(written: Written) -> str:
    return (f'"""Written by the student for the emergency {written.kind} {json.dumps(written.params)};\n'
            f'verified in the isolated sandbox. Provenance: the .json file beside this one."""\n\n'
            f'VERSION = "1.0.0"\n\n\n{written.source}')


def save(written: Written, folder: Path | None = None, kind: EmergencyKind | None = None) -> Path:
    """Store an accepted function and its provenance (atomically, never half-written); the
    provenance records the module file's sha256, checked whenever it is loaded."""
    if not written.passed:
        raise LDEngineError(f"no verified function for {written.kind} to store")
    path = (folder or store_dir(written.provenance["task"])) / f"{written.kind}-{params_key(written.params)}.py"
    text = module_source(written)
    if shipped(path.parent):
        raise LDEngineError(f"{path.parent} is the package's own folder; functions are stored in the user's data "
                            f"folder ({store_dir(written.provenance['task'])})")
    written.provenance = sign({**written.provenance, "file": path.name, "module_sha256": text_sha256(text)})
    write_atomic(path.with_suffix(".json"), json.dumps(written.provenance, indent=2).encode())
    write_atomic(path, text.encode())
    written.path = path
    return path


def load_stored(kind: EmergencyKind, params: dict, folder: Path | None = None, seed: int = 0,
                log: Callable[[str], None] = lambda s: None, game: GameInputs | None = None) -> Written | None:
    """A stored function for this instance, or None. A file changed since it was stored is
    refused (``StoredCodeChanged``); an unchanged one is verified again, on fresh inputs too,
    and None when it fails (say, against a stricter verification than it once passed)."""
    path = module_path(kind, params, folder)
    if not path.is_file() or not path.with_suffix(".json").is_file():
        return None
    provenance = read_stored_provenance(path)
    check_stored(path, provenance)
    name = provenance.get("function", kind.function_name())
    source = function_text(path.read_text(encoding="utf-8"), name)
    with IsolatedSandbox() as sandbox:
        check = verify(kind, params, source, name, sandbox, case_seed=seed, game=game)
    if not check.passed:
        log(f"{kind.name}: the stored {path.name} fails verification now ({check.line()}); not used")
        return None
    return Written(kind.name, dict(params), name, [], source, provenance, path, check)


def read_stored_provenance(path: Path) -> dict:
    """The .json provenance beside a stored function."""
    try:
        provenance = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoredCodeChanged(f"{path.with_suffix('.json')}: unreadable provenance ({exc})") from None
    if not isinstance(provenance, dict):
        raise StoredCodeChanged(f"{path.with_suffix('.json')}: the provenance is not a JSON object")
    return provenance


def check_stored(path: Path, provenance: dict) -> None:
    """Refuse a stored function whose file is not the one stored: its sha256 against the
    recorded ``module_sha256``. A module stored before that field existed must be exactly the
    text the engine writes around its accepted attempt's function (whose sha256 was recorded)."""
    recorded = provenance.get("module_sha256") or _legacy_module_sha256(path, provenance)
    remedy = f"restore it, or remove it: ldengine generated remove {path.stem} --task {provenance.get('task', 'TASK')}"
    check_file(path, recorded, remedy)
    if not shipped(path) and not signed(provenance):
        raise StoredCodeChanged(f"{unsigned_reason(str(path.with_suffix('.json')))}; {remedy}")


def _legacy_module_sha256(path: Path, provenance: dict) -> str | None:
    attempts, number = provenance.get("attempts") or [], provenance.get("accepted_attempt")
    if not isinstance(number, int) or not 1 <= number <= len(attempts) or not path.is_file():
        return None
    function = function_text(path.read_text(encoding="utf-8", errors="replace"), str(provenance.get("function")))
    if text_sha256(function) != attempts[number - 1].get("source_sha256"):
        return attempts[number - 1].get("source_sha256")
    return text_sha256(module_source(Written(str(provenance.get("kind")), provenance.get("params") or {},
                                             str(provenance.get("function")), source=function)))


def function_text(module_text: str, name: str) -> str:
    """The ``def name`` of a stored module, as text (read with ``ast``, never executed)."""
    try:
        tree = ast.parse(module_text)
    except SyntaxError:
        return ""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return (ast.get_source_segment(module_text, node) or "") + "\n"
    return ""


def stored_provenances(task: str) -> list[tuple[Path, dict]]:
    """(module path, provenance) of every function stored for ``task`` (the user's, then the
    shipped ones that the user's do not replace); unreadable ones left out."""
    out = []
    for path in stored_modules(task):
        try:
            out.append((path, read_stored_provenance(path)))
        except StoredCodeChanged:
            continue
    return out


def stored_modules(task: str) -> list[Path]:
    """The stored modules of ``task`` with a provenance file: the user's, then the shipped ones
    of other names."""
    seen: set[str] = set()
    out = []
    for folder in store_dirs(task):
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            if path.name not in seen and path.with_suffix(".json").is_file():
                seen.add(path.name)
                out.append(path)
    return out
