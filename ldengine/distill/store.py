"""Storing a checked module as a new version of the function base, never over another,
and listing the stored versions with their provenance."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ldengine.distill.check import MODULE_FILE, Round
from ldengine.errors import LDEngineError
from ldengine.functionbase import PROVENANCE, read_provenance, version_hash, version_names, versions_dir
from ldengine.signing import sign


@dataclass
class Distilled:
    """A stored version: where it is, its base's hash, and the rounds that led to it."""
    version: str
    path: Path
    base_hash: str
    stored: bool                # False: the same base was already stored under ``version``
    rounds: list[Round]


def store(task: str, done: Round, provenance: dict) -> Distilled:
    """Write the module and its provenance as a new version; the same base already stored is kept.
    The version's hash covers the module's whole text (``version_hash``), and the provenance
    records the file's sha256 (``modules``): both are checked whenever the version loads, and the
    provenance is signed with this machine's key (``ldengine.signing``): a version whose provenance
    was rewritten with its hashes is refused too."""
    source, base = done.module()
    base_hash = version_hash(base, {MODULE_FILE: source})
    root = versions_dir(task)
    root.mkdir(parents=True, exist_ok=True)
    for version in (f"distilled-{base_hash[:n]}" for n in (8, 16, 64)):
        final = root / version
        if final.exists():
            if _stored_hash(task, version) == base_hash:
                return Distilled(version, final, base_hash, False, [])
            continue        # another base under this name (a prefix collision): a longer name
        if _write_version(root, final, source, sign({**provenance, "version": version, "base_hash": base_hash,
                                                     "hash_covers": "modules"})):
            return Distilled(version, final, base_hash, True, [])
    raise LDEngineError(f"cannot store the new base under {root}: every name is taken")


def _write_version(root: Path, final: Path, source: str, provenance: dict) -> bool:
    """Write into a temporary folder, then rename it into place (never over an existing one)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        (tmp / MODULE_FILE).write_bytes(source.encode("utf-8"))     # bytes: the recorded sha256 is of these
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        os.rename(tmp, final)
        return True
    except OSError:
        if final.exists():      # stored meanwhile by another process
            return False
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stored_hash(task: str, version: str) -> str | None:
    try:
        return read_provenance(task, version).get("base_hash")
    except LDEngineError:
        return None


def version_lines(task: str) -> list[str]:
    """One line per stored version of ``task``: name, when, from which teacher, rounds, checks."""
    lines = []
    for name in version_names(task):
        try:
            p = read_provenance(task, name)
        except LDEngineError as exc:
            lines.append(f"{name:<22} {exc}")
            continue
        teacher, games = p.get("teacher", {}), p.get("check_games", {})
        won = games.get("outcomes", {}).get("success")
        played = f", check games {won}/{games.get('games')} won" if won is not None else ""
        lines.append(f"{name:<22} {p.get('created', '?'):<21} {len(p.get('functions', []))} functions, "
                     f"{p.get('rounds', '?')}/{p.get('max_rounds', '?')} rounds{played}, "
                     f"teacher {teacher.get('model', '?')} at {teacher.get('url', '?')}, "
                     f"base {str(p.get('base_hash', ''))[:12]}")
    return lines
