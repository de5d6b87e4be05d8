"""The student backend on Hugging Face transformers (SmolLM2-135M-Instruct by default):
selection (``ldengine.models.selection``, where Eq. 3 is read), generation
(``generation``) and LoRA training (``training``), and its adapters' files here.

torch is imported inside methods only: importing ``ldengine.models`` must not cost the
CLI the seconds torch takes to import. Not thread-safe: one student per thread.
"""
from __future__ import annotations

from pathlib import Path

from ldengine.errors import LDEngineError
from ldengine.models import lora
from ldengine.models.base import JOINT, LAYOUTS
from ldengine.models.training import TrainingStudent


class TransformersStudent(TrainingStudent):
    """A causal LM that selects among candidate functions, writes new ones and learns (LoRA)."""

    def load_adapter(self, directory: str | Path) -> None:
        """Apply a saved LoRA adapter (refused if its manifest names other base weights)."""
        self.model = lora.load(self.model, Path(directory), self.model_hash)
        self._trained_here = False
        manifest = lora.read_manifest(Path(directory))
        self.layout = manifest.get("selection_layout", JOINT)
        self.near = int(manifest.get("near") or 0)
        if self.layout not in LAYOUTS:
            raise LDEngineError(f"the adapter in {directory} reads selections in the layout {self.layout!r}, "
                                f"which this engine does not know (known: {', '.join(LAYOUTS)})")
        self._after_weights_change()

    def save_adapter(self, directory: str | Path, manifest: dict) -> None:
        """Write the adapter (a few MB) and ``manifest.json`` describing it."""
        if self.adapter_hash is None:
            raise LDEngineError("this student has no adapter to save: train_lora or load one first")
        lora.save(self.model, Path(directory), {**manifest, "base_model": self.name,
                                                "selection_layout": self.layout,
                                                "base_model_hash": self.model_hash,
                                                "adapter_hash": self.adapter_hash})
