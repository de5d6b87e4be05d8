"""The on-disk cache (converted students, retrieval indexes) and file hashes.

Results record which files produced them, so models, indexes and adapters are
identified by the sha256 of their bytes rather than by names that can drift.
Everything written here is written atomically: an interrupted run never leaves
a half file that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$LDENGINE_CACHE``, else ``~/.cache/ldengine``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LDENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ldengine"


@dataclass
class CachePart:
    """One part of the cache, what it holds, and whether ``ldengine cache clean`` removes it."""
    name: str
    path: Path
    what: str
    cleaned: bool
    size: int = 0       # bytes
    items: int = 0      # entries directly inside (a file counts one)


# What the engine rebuilds when it is missing (cleaned), and what only a user's command makes (kept).
PARTS = (("students", "converted student models (GGUF -> safetensors, ~40 s to rebuild)", True),
         ("indexes", "retriever indexes (seconds to rebuild)", True),
         ("conditions", "alternatives' When: fields read into conditions over their facts (~20 s to rebuild)", True),
         ("kv", "keys and values of the selection prompts' fixed texts (a second to rebuild)", True),
         ("file-hashes.json", "sha256 of large files, remembered by size and mtime", True),
         ("adapters", "adapters written by finetune --quick", False))


def cache_parts(cache_dir: str | Path | None = None) -> list[CachePart]:
    """Each part of the cache with its size on disk (zero when absent)."""
    root = cache_root(cache_dir)
    return [_measured(CachePart(name, root / name, what, cleaned)) for name, what, cleaned in PARTS]


def clean_cache(cache_dir: str | Path | None = None) -> list[CachePart]:
    """Remove the parts the engine rebuilds when needed; returns what was there."""
    removed = [part for part in cache_parts(cache_dir) if part.cleaned and part.path.exists()]
    for part in removed:
        if part.path.is_dir():
            shutil.rmtree(part.path)
        else:
            part.path.unlink()
    return removed


def _measured(part: CachePart) -> CachePart:
    path = part.path
    if path.is_file():
        part.size, part.items = path.stat().st_size, 1
    elif path.is_dir():
        part.size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        part.items = sum(1 for _ in path.iterdir())
    return part


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (about 0.1 s for the 98 MB default GGUF)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_sha256(path: Path) -> str:
    """sha256 of a large file, remembered in the cache by path, size and mtime."""
    stat, memo_path = path.stat(), cache_root() / "file-hashes.json"
    key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
    memo = read_json(memo_path)
    memo = memo if isinstance(memo, dict) else {}
    if isinstance(memo.get(key), dict) and memo[key].get("stamp") == stamp:
        return memo[key]["sha256"]
    digest = sha256_file(path)
    memo[key] = {"stamp": stamp, "sha256": digest}
    try:
        write_atomic(memo_path, json.dumps(memo, indent=1).encode())
    except OSError:  # a read-only cache only costs hashing again next time
        pass
    return digest


def read_json(path: Path) -> Any:
    """The file's JSON, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def temp_beside(path: Path) -> Path:
    """A new empty temporary file in ``path``'s folder (same file system: renames are atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a temporary file in the same folder, then rename it over ``path``."""
    tmp = temp_beside(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class LRU:
    """A map that keeps its ``maxsize`` most recently used entries (0: keeps nothing).

    Used for what a process computes again and again: prefix keys and values,
    selections, retrieval results. ``maxsize`` may be changed at any time.
    """

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        """The value, or None when absent (values are never None)."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > max(self.maxsize, 0):
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class Memoised:
    """``memo_size``: how many answers an object with an ``LRU`` in ``_memo`` remembers
    (0: it computes every one)."""
    _memo: LRU      # set by the subclass's __init__

    @property
    def memo_size(self) -> int:
        return self._memo.maxsize

    @memo_size.setter
    def memo_size(self, size: int) -> None:
        self._memo.maxsize = size
