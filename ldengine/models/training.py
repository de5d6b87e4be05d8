"""The student, part 3: LoRA training on selections (the answer token) and on texts
(a function written for a rule). torch is imported inside methods only."""
from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Callable, cast

from ldengine.errors import LDEngineError
from ldengine.models import lora
from ldengine.models.generation import GeneratingStudent, _pad_right
from ldengine.models.kv import expanded_cache

if TYPE_CHECKING:
    import torch


class TrainingStudent(GeneratingStudent):
    """A student whose LoRA adapter can be trained on selections and on texts."""

    def train_lora(self, examples: list[tuple[str, str, list[str], int]], steps: int, lr: float = 2e-4,
                   batch_size: int = 16, rank: int = 8, seed: int = 0, progress: bool = True,
                   top_layers: int | None = None, modules: list[str] | None = None) -> dict:
        """Fine-tune a LoRA adapter (q and v projections) so that ``select`` picks
        the right option: cross-entropy over the K candidate scores, scored exactly as
        ``select`` scores them. Only the adapter trains; an adapter already loaded
        is trained further (``rank``, ``top_layers`` and ``modules`` then have no effect).
        ``top_layers`` limits the adapter to the last N layers, ``modules`` to those
        projections (see ``lora.attach``).

        Each step runs every distinct prefix of the batch once, with grad, and
        expands it over that prefix's rows, as ``select_batch`` does.
        """
        if not examples:
            raise LDEngineError("train_lora needs at least one example")
        _check_targets(examples)
        return self._train(examples, self._batch_loss, steps, lr, batch_size, rank, seed, progress, top_layers,
                           modules=modules)

    def train_lora_text(self, examples: list[tuple[str, str, str]], steps: int, lr: float = 2e-3,
                        batch_size: int = 16, rank: int = 8, seed: int = 0, progress: bool = True,
                        top_layers: int | None = None, chat: bool = True, start_step: int = 0,
                        optimizer_state: dict | None = None, modules: list[str] | None = None) -> dict:
        """Fine-tune a LoRA adapter so that ``generate_batch(prompt, prefix=prefix)``
        answers ``answer``: cross-entropy on the answer's tokens only, read after
        exactly the tokens ``generate_batch`` reads (examples are
        ``(prefix, prompt, answer)``; knowledge distillation uses it).

        A run can go in pieces: steps ``start_step`` to ``steps`` of the same seeded
        batch order, the optimizer continuing from ``optimizer_state`` (the
        ``optimizer_state`` of the returned figures); the adapter trained so far
        must be loaded. Pieces give the same batches as one run of ``steps``.
        """
        if not examples:
            raise LDEngineError("train_lora_text needs at least one example")
        if any(not answer for _, _, answer in examples):
            raise LDEngineError("every training example needs a non-empty answer")
        loss = lambda rows: self._text_loss(rows, chat)  # noqa: E731
        return self._train(examples, loss, steps, lr, batch_size, rank, seed, progress, top_layers,
                           start_step, optimizer_state, modules)

    def _train(self, examples: list, loss_fn: Callable, steps: int, lr: float, batch_size: int,
               rank: int, seed: int, progress: bool, top_layers: int | None, start_step: int = 0,
               optimizer_state: dict | None = None, modules: list[str] | None = None) -> dict:
        import torch

        if not 0 <= start_step < steps:
            raise LDEngineError(f"training from step {start_step} to step {steps} is no training")
        torch.manual_seed(seed + start_step)
        self.model = lora.attach(self.model, rank, top_layers, modules)
        self._trained_here = True
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        batches = _batches(len(examples), batch_size, steps, seed)[start_step:]
        start = time.perf_counter()
        losses = self._train_steps(examples, batches, optimizer, params, progress, loss_fn)
        seconds = time.perf_counter() - start
        self._after_weights_change()
        done = len(batches)
        return {"steps": steps, "batch_size": batch_size, "optimizer_state": optimizer.state_dict(),
                "examples_per_second": round(done * batch_size / seconds, 2) if seconds else None,
                "first_loss": losses[0] if losses else None,
                "final_loss": losses[-1] if losses else None, "losses": losses,
                "seconds": seconds, "trainable_parameters": sum(p.numel() for p in params)}

    def _train_steps(self, examples: list[tuple], batches: list[list[int]], optimizer: torch.optim.Optimizer,
                     params: list, progress: bool, loss_fn: Callable) -> list[float]:
        import torch
        from tqdm.auto import tqdm

        self.model.train()
        losses: list[float] = []
        bar = tqdm(batches, desc="LoRA training", unit="step", disable=not progress)
        start, seen = time.perf_counter(), 0
        for batch in bar:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn([examples[i] for i in batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(loss.item())
            seen += len(batch)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", examples_per_s=f"{seen / (time.perf_counter() - start):.1f}")
        self.model.eval()
        return losses

    def _batch_loss(self, rows: list[tuple]) -> torch.Tensor:
        """Mean cross-entropy of the right candidates over a batch, scored as ``select`` scores.

        A prefix's keys and values are computed once per step, with grad, and
        shared by the batch's selections that use it.
        """
        import torch
        import torch.nn.functional as F

        self._prefixes.clear()  # this step's weights: fresh prefixes and candidate rows, kept for the step only
        self._rows.clear()
        self._assembled.clear()
        scores = self._scores_many([(prefix, query, list(options)) for prefix, query, options, _ in rows])
        self._prefixes.clear()
        self._rows.clear()
        self._assembled.clear()
        total = sum(F.cross_entropy(s.unsqueeze(0), torch.tensor([right], device=self.device))
                    for s, (_, _, _, right) in zip(scores, rows))
        return cast("torch.Tensor", total / len(rows))     # rows: a batch, never empty

    def _text_loss(self, rows: list[tuple[str, str, str]], chat: bool) -> torch.Tensor:
        """Mean cross-entropy of the answers' tokens, each prefix run once with grad."""
        import torch
        import torch.nn.functional as F

        head, tail = self._chat_parts() if chat else ("", "")
        groups: dict[str, list[tuple[str, str]]] = {}
        for prefix, prompt, answer in rows:
            groups.setdefault(prefix, []).append((prompt, answer))
        total: float | torch.Tensor = 0.0       # a tensor once the first group's loss is added
        count = 0
        for prefix, items in groups.items():
            prefix_ids = self._encode(head + prefix, special=True)
            layers = self._prefix_layers(prefix_ids) if prefix_ids else None
            seqs, answer_spans = [], []
            for prompt, answer in items:
                question = self._encode(prompt + tail, special=not prefix_ids)
                reply = self._encode(answer, special=False)
                seqs.append(question + reply)
                answer_spans.append((len(question), len(question) + len(reply)))
            ids, mask, _ = _pad_right(seqs, self._pad_id, self.device)
            batch, width = ids.shape
            start = len(prefix_ids)
            positions = (start + torch.arange(width, device=self.device)).expand(batch, width)
            mask = torch.cat([mask.new_ones(batch, start), mask], dim=1)
            cache = expanded_cache(layers, batch, self.model.config) if layers else None
            # logits at position t predict token t+1: keep those before each answer token
            keep = torch.tensor(sorted({t for a, b in answer_spans for t in range(a - 1, b - 1)}),
                                device=self.device)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             cache=cache, use_cache=True, logits_to_keep=keep)
            where = {int(t): i for i, t in enumerate(keep)}
            for row, (a, b) in enumerate(answer_spans):
                cols = torch.tensor([where[t] for t in range(a - 1, b - 1)], device=self.device)
                logits = out.logits[row, cols]
                total = total + F.cross_entropy(logits.float(), ids[row, a:b], reduction="sum")
                count += b - a
        return cast("torch.Tensor", total / count)         # rows: a batch, never empty


def _batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches drawn epoch by epoch from a seeded shuffle of ``range(n)``."""
    rng = random.Random(seed)
    order: list[int] = []
    out = []
    for _ in range(steps):
        while len(order) < batch_size:
            epoch = list(range(n))
            rng.shuffle(epoch)
            order.extend(epoch)
        out.append(order[:batch_size])
        order = order[batch_size:]
    return out


def _check_targets(examples: list[tuple[str, str, list[str], int]]) -> None:
    for prefix, query, options, right in examples:
        if not 0 <= right < len(options):
            raise LDEngineError(f"training example {query[:60]!r} names option {right}, "
                                f"but has {len(options)} options")
