"""Keys and values of the selection prompt's fixed texts, kept on disk between processes.

A selection reads the task's rules (the prefix, ~260 tokens) and each candidate's row
(~40 tokens, read once after the prefix) before its own query; neither depends on the
state. A process keeps them in memory (``TransformersStudent._prefixes`` and ``_rows``),
but each new process read them again: about 0.8 s of a one-game ``ldengine run`` on two
cores. Here they are stored once per set of weights, as safetensors files, under
``<cache>/kv/<weights>/`` where ``<weights>`` hashes what the numbers depend on: the
base model's and the adapter's hashes, the dtype, the device and the torch and
transformers versions. A file is named by the sha256 of the token ids it holds the keys
and values of (and, for a row, of its prefix's ids), and records the sha256 of its
tensors' bytes: a file that fails it is removed and computed again, never used.

Only weights loaded from files are stored: an adapter being trained changes every step,
and the student then uses its in-memory caches only. ``ldengine cache clean`` removes the
folder; at most ``KEEP`` weight folders are kept, and ``FOLDER_BYTES`` in each, the least
recently used removed first (an emergency's rule changes the prefix, and so every row).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ldengine.cache import cache_root, temp_beside
from ldengine.signing import key_id, sign, signed

if TYPE_CHECKING:
    from ldengine.models.selection import SelectingStudent

FORMAT = 1
KEEP = 6                     # weight folders kept (a few adapters, two dtypes)
FOLDER_BYTES = 512 << 20     # a folder's files beyond this: the least recently used removed
CHECK_EVERY = 64             # puts between two measurements of the folder

log = logging.getLogger(__name__)


class KVDisk:
    """``get``/``put`` of per-layer (keys, values) under one set of weights."""

    def __init__(self, folder: Path, device: str, layer_count: int | None = None):
        self.folder, self.device, self.layer_count = folder, device, layer_count
        self._puts = 0

    @classmethod
    def for_student(cls, student: SelectingStudent, cache_dir: str | Path | None = None) -> "KVDisk":
        import torch
        import transformers

        ident = json.dumps([FORMAT, student.model_hash, student.adapter_hash, student.dtype, str(student.device),
                            torch.__version__, transformers.__version__, key_id()])
        folder = cache_root(cache_dir) / "kv" / hashlib.sha256(ident.encode()).hexdigest()[:16]
        count = getattr(getattr(getattr(student, "model", None), "config", None), "num_hidden_layers", None)
        return cls(folder, str(student.device), count if isinstance(count, int) else None)

    def get(self, ids: Sequence[int], after: Sequence[int] = ()) -> list | None:
        """The stored layers for ``ids`` read after ``after``, or None (absent, or damaged: removed)."""
        from safetensors import SafetensorError, safe_open

        path = self._path(ids, after)
        if not path.is_file():
            return None
        layers, record = [], {}
        try:
            with safe_open(str(path), framework="pt", device=self.device) as fh:
                record = dict(fh.metadata() or {})
                count = len(list(fh.keys())) // 2
                layers = [(fh.get_tensor(f"k{i}"), fh.get_tensor(f"v{i}")) for i in range(count)]
        except (SafetensorError, OSError, ValueError, KeyError):
            layers = []
        # its digest, its signature (a file rewritten with its digest is not this machine's), and
        # its shape: every layer's keys and values alike, one position per token it was stored for
        if (not layers or record.get("sha256") != _digest(layers) or record.get("file") != path.name
                or not signed(record) or not _shaped(layers, len(ids), self.layer_count)):
            log.warning("cached keys and values %s discarded (damaged, reshaped, or not signed with this "
                        "machine's key); computing them again", path.name)
            path.unlink(missing_ok=True)
            return None
        for used in (path, self.folder):    # recently used: pruned last
            os.utime(used)
        return layers

    def put(self, ids: Sequence[int], layers: list, after: Sequence[int] = ()) -> None:
        """Store ``layers`` (a failure to write costs only computing them again next time)."""
        from safetensors.torch import save_file

        path = self._path(ids, after)
        if path.is_file():
            return
        fresh = not self.folder.is_dir()
        tensors = {}
        for i, (k, v) in enumerate(layers):
            tensors[f"k{i}"], tensors[f"v{i}"] = k.detach().contiguous(), v.detach().contiguous()
        try:
            tmp = temp_beside(path)
            try:
                save_file(tensors, str(tmp), metadata=sign({"sha256": _digest(layers), "tokens": str(len(ids)),
                                                            "file": path.name}))
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError:
            return
        if fresh:
            _prune(self.folder.parent, KEEP)
        if self._puts % CHECK_EVERY == 0:
            _trim(self.folder, FOLDER_BYTES)
        self._puts += 1

    def _path(self, ids: Sequence[int], after: Sequence[int]) -> Path:
        key = hashlib.sha256(json.dumps([list(after), list(ids)]).encode()).hexdigest()
        return self.folder / f"{key}.safetensors"


def _shaped(layers: list, tokens: int, count: int | None) -> bool:
    """Are there ``count`` layers (when known), their keys and values 4-D, all of one shape,
    with ``tokens`` positions?"""
    shape = tuple(layers[0][0].shape)
    return (count is None or len(layers) == count) and len(shape) == 4 and shape[2] == tokens and all(
        tuple(k.shape) == shape and tuple(v.shape) == shape for k, v in layers)


def _digest(layers: list) -> str:
    import torch

    h = hashlib.sha256()
    for k, v in layers:
        for t in (k, v):
            h.update(t.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _trim(folder: Path, limit: int) -> None:
    """Remove the least recently used files until the folder holds at most ``limit`` bytes
    (every emergency's rules make a new prefix, and so new rows: a long eval would grow it)."""
    files = sorted(((f.stat().st_mtime, f.stat().st_size, f) for f in folder.glob("*.safetensors")), reverse=True)
    total = 0
    for _, size, f in files:
        total += size
        if total > limit:
            f.unlink(missing_ok=True)


def _prune(root: Path, keep: int) -> None:
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in folders[keep:]:
        shutil.rmtree(old, ignore_errors=True)
