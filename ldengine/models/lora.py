"""LoRA adapters for the student: attach, identify, save with a manifest, load.

An adapter is versioned in the repo next to the function base it was trained
on, so it is small (rank 8 on q/v of SmolLM2-135M: 0.46 M parameters, 1.8 MB)
and carries a manifest saying which base weights it belongs to; loading it on
other weights is refused rather than silently giving nonsense selections.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, cast

from ldengine.errors import LDEngineError
from ldengine.signing import sign

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel

TARGET_MODULES = ["q_proj", "v_proj"]
# The projections of a Llama-family decoder layer an adapter may adapt (``--lora-modules``).
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MANIFEST = "manifest.json"
WEIGHTS = "adapter_model.safetensors"


def attach(model: PreTrainedModel | PeftModel, rank: int, top_layers: int | None = None,
           modules: list[str] | None = None) -> PeftModel:
    """A peft model with a fresh adapter, or ``model`` itself with its loaded
    adapter made trainable; in both only the LoRA weights require grad.

    ``top_layers``: adapt only the last N decoder layers. Backpropagation then
    stops at the lowest adapted layer, which on a CPU makes a training step
    several times cheaper; None adapts every layer. ``modules``: the projections adapted
    (default ``TARGET_MODULES``, q and v).
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    if not isinstance(model, PeftModel):
        _quiet_peft()
        layers = int(model.config.num_hidden_layers)
        chosen = None if top_layers is None else list(range(max(0, layers - top_layers), layers))
        config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                            target_modules=list(modules or TARGET_MODULES), task_type="CAUSAL_LM",
                            layers_to_transform=chosen)
        return get_peft_model(model, config)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    return model


def _quiet_peft() -> None:
    """Silence two library warnings that say nothing actionable to our users: transformers'
    rename of ``is_gradient_checkpointing`` (called by peft) and peft's note that a GGUF
    base has no config file to compare vocabularies with (the manifest pins the base)."""

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Could not find a config file in .*", category=UserWarning)


def adapter_hash(model: PreTrainedModel | PeftModel) -> str | None:
    """sha256 of the adapter's tensors (names and values), None without one; the
    same in memory after training and after a save/load round trip."""
    from peft import PeftModel, get_peft_model_state_dict

    if not isinstance(model, PeftModel):
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(get_peft_model_state_dict(model).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save(model: PreTrainedModel | PeftModel, directory: Path, manifest: dict) -> None:
    """Adapter weights, peft's adapter_config.json, and manifest.json."""
    import peft
    import torch
    import transformers

    _quiet_peft()
    config = cast("LoraConfig", model.peft_config["default"])     # the adapters here are LoRA (``attach``)
    # peft records the base model's local path (a cache directory on this
    # machine); the manifest's name and hash identify it portably instead.
    config.base_model_name_or_path = manifest.get("base_model")
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    (directory / "README.md").unlink(missing_ok=True)  # peft's model-card stub; manifest.json documents it
    full = {**manifest, "rank": config.r, "lora_alpha": config.lora_alpha,
            "target_modules": sorted(cast("Iterable[str]", config.target_modules)),   # named by ``attach``
            "peft_version": peft.__version__,
            "transformers_version": transformers.__version__, "torch_version": torch.__version__}
    (directory / MANIFEST).write_text(json.dumps(sign(full), indent=2, sort_keys=True) + "\n")


def read_manifest(directory: Path) -> dict:
    """The adapter's manifest, or {} for a plain peft adapter directory."""
    path = directory / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def load(model: PreTrainedModel | PeftModel, directory: Path, model_hash: str) -> PeftModel:
    """``model`` with the adapter in ``directory`` applied (inference mode)."""
    from peft import PeftModel

    if not (directory / "adapter_config.json").is_file():
        raise LDEngineError(f"no LoRA adapter in {directory} (adapter_config.json missing)")
    try:
        manifest = read_manifest(directory)
    except (ValueError, OSError) as exc:
        raise LDEngineError(f"the manifest of the adapter in {directory} cannot be read ({exc}); "
                            "train it again or restore it") from None
    recorded = manifest.get("adapter_hash") if isinstance(manifest, dict) else None
    if not recorded:
        raise LDEngineError(f"the adapter in {directory} has no adapter_hash in its manifest.json, so its weights "
                            "cannot be checked before they are used; adapters saved by `ldengine finetune` record "
                            "it: train it again (or --from-adapter it) rather than load it unchecked")
    expected = manifest.get("base_model_hash")
    if expected and expected != model_hash:
        raise LDEngineError(f"the adapter in {directory} was trained on base weights {expected[:16]}, "
                            f"not on the loaded student's {model_hash[:16]}")
    if isinstance(model, PeftModel):
        raise LDEngineError("this student already has an adapter; load a fresh student to apply another")
    _quiet_peft()
    try:
        loaded = PeftModel.from_pretrained(model, str(directory), is_trainable=False).eval()
    except Exception as exc:        # a damaged file: safetensors' header, a config peft refuses, ...
        raise LDEngineError(f"the adapter in {directory} cannot be loaded: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else 'damaged'}; train it again or "
                            "restore it") from None
    if adapter_hash(loaded) != recorded:
        raise LDEngineError(f"{directory / WEIGHTS} was changed after it was saved (its tensors no longer "
                            f"hash to the manifest's adapter_hash {recorded[:12]}); train it again or restore it")
    return loaded
