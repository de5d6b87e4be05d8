"""The student backend on Hugging Face transformers (SmolLM2-135M-Instruct by default).

Selection (Eq. 3 of the paper) is one forward pass: the text is
``prefix + query + "\\n" + "A) ...\\n" ... + "Answer:"`` and the next-token
logits of the labels `` A``, `` B``, ... are softmaxed over the K options.
The prefix is tokenised on its own and the suffix appended as tokens, with or
without the prefix cache, so both paths score exactly the same token sequence
(end a prefix with a newline to keep the two tokenisations natural).

torch is imported inside methods only: importing ``ldengine.models`` must not
cost the CLI the seconds torch takes to import. Not thread-safe: one student
per thread.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from ldengine.errors import LDEngineError
from ldengine.models import lora
from ldengine.models.base import LABELS, Selection, selection_suffix
from ldengine.models.kv import PrefixCache, cache_layers, expanded_cache

MICRO_BATCH = 16  # rows per forward pass in select_batch; bounds memory, not results


class TransformersStudent:
    """A causal LM that selects among candidate functions and writes new ones."""

    def __init__(self, model: Any, tokenizer: Any, name: str, model_hash: str, device: str,
                 use_prefix_cache: bool = True, prefix_cache_size: int = 8):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.model_hash = model_hash
        self.device = device
        self.adapter_hash: str | None = None
        self.use_prefix_cache = use_prefix_cache
        self._prefixes = PrefixCache(prefix_cache_size)
        self._weights_version = 0
        self._label_ids = label_token_ids(tokenizer)
        self._pad_id = pad_token_id(tokenizer)

    # ---- selection -------------------------------------------------------------

    def selection_prompt(self, prefix: str, query: str, options: list[str]) -> str:
        """The exact text whose next token is scored."""
        return prefix + selection_suffix(query, options)

    def select(self, prefix: str, query: str, options: list[str]) -> Selection:
        """Pick one of ``options``; its probabilities sum to 1."""
        return self.select_batch([(prefix, query, options)])[0]

    def select_batch(self, items: list[tuple[str, str, list[str]]]) -> list[Selection]:
        """Select for several decisions at once (e.g. games played together);
        items sharing a prefix run as one padded batch over that prefix's cache."""
        import torch

        results: list[Selection | None] = [None] * len(items)
        for prefix, indices in _group_by_prefix(items).items():
            for start in range(0, len(indices), MICRO_BATCH):
                chunk = indices[start:start + MICRO_BATCH]
                with torch.inference_mode():
                    logits = self._group_logits(prefix, [items[i][1:] for i in chunk])
                for i, row in zip(chunk, logits):
                    results[i] = _selection(row[:len(items[i][2])])
        return results  # type: ignore[return-value]

    def _group_logits(self, prefix: str, queries: list[tuple[str, list[str]]]) -> Any:
        """Label logits [B, max K] for queries sharing ``prefix`` (-inf beyond each K)."""
        prefix_ids = self._encode(prefix, special=True)
        suffixes = [self._encode(selection_suffix(q, opts), special=not prefix_ids) for q, opts in queries]
        ks = [len(opts) for _, opts in queries]
        if self.use_prefix_cache and prefix_ids:
            layers = self._cached_prefix(prefix, prefix_ids)
            return self._suffix_logits(layers, len(prefix_ids), suffixes, ks)
        return self._suffix_logits(None, 0, [prefix_ids + s for s in suffixes], ks)

    def _cached_prefix(self, prefix: str, prefix_ids: list[int]) -> list:
        key = (prefix, self._weights_version)
        layers = self._prefixes.get(key)
        if layers is None:
            layers = self._prefix_layers(prefix_ids)
            self._prefixes.put(key, layers)
        return layers

    def _prefix_layers(self, prefix_ids: list[int]) -> list:
        """Run the prefix once and keep its keys and values (with grad when training)."""
        import torch

        ids = torch.tensor([prefix_ids], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return cache_layers(out.past_key_values)

    def _suffix_logits(self, layers: list | None, prefix_len: int, suffixes: list[list[int]],
                       ks: list[int]) -> Any:
        """One forward pass over right-padded suffixes after an optional prefix cache.

        Right padding keeps every real token's position and causal context exactly
        as in an unpadded run; only the logits at each row's last real token are
        computed (``logits_to_keep``), then narrowed to the label tokens.
        """
        import torch

        ids, mask, last = _pad_right(suffixes, self._pad_id, self.device)
        batch, width = ids.shape
        positions = (prefix_len + torch.arange(width, device=self.device)).expand(batch, width)
        if prefix_len:
            mask = torch.cat([mask.new_ones(batch, prefix_len), mask], dim=1)
        cache = expanded_cache(layers, batch, self.model.config) if layers else None
        keep = torch.unique(last)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=cache is not None, logits_to_keep=keep)
        rows = out.logits[torch.arange(batch, device=self.device), torch.searchsorted(keep, last)]
        return _label_scores(rows, self._label_ids[:max(ks)], ks)

    def _encode(self, text: str, special: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    # ---- generation ------------------------------------------------------------

    def generate(self, prompt: str, max_new_tokens: int = 256, temperature: float = 0.0,
                 seed: int = 0, num_return_sequences: int = 1, chat: bool = True) -> list[str]:
        """Write text (e.g. a new function for an emergency, Eq. 6).

        ``chat`` wraps the prompt in the model's chat template (the instruct
        model writes code far better that way). Temperature 0 is greedy and
        deterministic, so its ``num_return_sequences`` answers are identical copies.
        """
        import torch

        ids = self._generation_ids(prompt, chat)
        sample = temperature > 0
        torch.manual_seed(seed)
        options: dict[str, Any] = {"do_sample": sample, "max_new_tokens": max_new_tokens,
                                   "pad_token_id": self._pad_id}
        if sample:
            options.update(temperature=temperature, top_k=0, top_p=1.0,
                           num_return_sequences=num_return_sequences)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)
        texts = self.tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
        return texts if sample else texts * num_return_sequences

    def _generation_ids(self, prompt: str, chat: bool) -> Any:
        import torch

        if chat and getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                      tokenize=False, add_generation_prompt=True)
            return torch.tensor([self._encode(text, special=False)], device=self.device)
        return torch.tensor([self._encode(prompt, special=True)], device=self.device)

    # ---- LoRA --------------------------------------------------------------------

    def train_lora(self, examples: list[tuple[str, str, list[str], int]], steps: int, lr: float = 2e-4,
                   batch_size: int = 16, rank: int = 8, seed: int = 0, progress: bool = True) -> dict:
        """Fine-tune a LoRA adapter (q and v projections) so that ``select`` picks
        the right option: cross-entropy over the K label logits, scored exactly as
        ``select`` scores them. Only the adapter trains; an adapter already loaded
        is trained further (``rank`` then has no effect).

        Each step runs every distinct prefix of the batch once, with grad, and
        expands it over that prefix's rows, as ``select_batch`` does.
        """
        import torch

        if not examples:
            raise LDEngineError("train_lora needs at least one example")
        _check_targets(examples)
        torch.manual_seed(seed)
        self.model = lora.attach(self.model, rank)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        encoded = self._encode_examples(examples)
        batches = _batches(len(examples), batch_size, steps, seed)
        start = time.perf_counter()
        losses = self._train_steps(encoded, batches, optimizer, params, progress)
        seconds = time.perf_counter() - start
        self._after_weights_change()
        return {"steps": steps, "first_loss": losses[0] if losses else None,
                "final_loss": losses[-1] if losses else None, "losses": losses,
                "seconds": seconds, "trainable_parameters": sum(p.numel() for p in params)}

    def _encode_examples(self, examples: list[tuple[str, str, list[str], int]]) -> list[tuple]:
        """(prefix text, prefix ids, suffix ids, K, right index) per example."""
        prefix_ids = {p: self._encode(p, special=True) for p in {e[0] for e in examples}}
        return [(p, prefix_ids[p], self._encode(selection_suffix(q, opts), special=not prefix_ids[p]),
                 len(opts), right) for p, q, opts, right in examples]

    def _train_steps(self, encoded: list[tuple], batches: list[list[int]], optimizer: Any,
                     params: list, progress: bool) -> list[float]:
        import torch
        from tqdm.auto import tqdm

        self.model.train()
        losses: list[float] = []
        bar = tqdm(batches, desc="LoRA", unit="step", disable=not progress)
        for batch in bar:
            optimizer.zero_grad(set_to_none=True)
            loss = self._batch_loss([encoded[i] for i in batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        self.model.eval()
        return losses

    def _batch_loss(self, rows: list[tuple]) -> Any:
        """Mean cross-entropy of the right labels over a batch, grouped by prefix."""
        import torch
        import torch.nn.functional as F

        total = 0.0
        for prefix, members in _group_by_prefix(rows).items():
            group = [rows[i] for i in members]
            prefix_ids, ks = group[0][1], [r[3] for r in group]
            targets = torch.tensor([r[4] for r in group], device=self.device)
            if prefix_ids:
                logits = self._suffix_logits(self._prefix_layers(prefix_ids), len(prefix_ids),
                                             [r[2] for r in group], ks)
            else:
                logits = self._suffix_logits(None, 0, [r[2] for r in group], ks)
            total = total + F.cross_entropy(logits.float(), targets, reduction="sum")
        return total / len(rows)

    def load_adapter(self, directory: str | Path) -> None:
        """Apply a saved LoRA adapter (refused if its manifest names other base weights)."""
        self.model = lora.load(self.model, Path(directory), self.model_hash)
        self._after_weights_change()

    def save_adapter(self, directory: str | Path, manifest: dict) -> None:
        """Write the adapter (a few MB) and ``manifest.json`` describing it."""
        if self.adapter_hash is None:
            raise LDEngineError("this student has no adapter to save: train_lora or load one first")
        lora.save(self.model, Path(directory), {**manifest, "base_model": self.name,
                                                "base_model_hash": self.model_hash,
                                                "adapter_hash": self.adapter_hash})

    def _after_weights_change(self) -> None:
        """New weights: forget cached prefixes and record the adapter's identity."""
        self._weights_version += 1
        self._prefixes.clear()
        self.adapter_hash = lora.adapter_hash(self.model)


def label_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of `` A``, `` B``, ...: each label must be one token so that one
    next-token distribution scores all options."""
    ids = []
    for label in LABELS:
        pieces = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            break
        ids.append(pieces[0])
    if len(ids) < 2:
        raise LDEngineError("this tokenizer does not encode the option labels ' A', ' B' as single "
                            "tokens, so it cannot be used as a selecting student")
    return ids


def pad_token_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def _label_scores(rows: Any, label_ids: list[int], ks: list[int]) -> Any:
    """Logits of the label tokens, -inf for labels beyond a row's K."""
    import torch

    scores = rows[:, label_ids].float()
    width = torch.arange(len(label_ids), device=rows.device)
    beyond = width.unsqueeze(0) >= torch.tensor(ks, device=rows.device).unsqueeze(1)
    return scores.masked_fill(beyond, float("-inf"))


def _selection(logits: Any) -> Selection:
    probs = logits.double().softmax(-1)
    return Selection(index=int(probs.argmax()), probabilities=[float(p) for p in probs])


def _pad_right(seqs: list[list[int]], pad_id: int, device: str) -> tuple:
    """(ids, attention mask, index of each row's last real token)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
    last = torch.tensor([len(s) - 1 for s in seqs])
    return ids.to(device), mask.to(device), last.to(device)


def _group_by_prefix(items: list[tuple]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item[0], []).append(i)
    return groups


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
