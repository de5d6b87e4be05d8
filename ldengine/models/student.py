"""The student backend on Hugging Face transformers (SmolLM2-135M-Instruct by default).

Selection (Eq. 3 of the paper) scores each of the K candidates: the model reads
``prefix + query`` once, then, for every candidate in one batched pass over
that context's keys and values, ``"Candidate: ...\nDoes the candidate perform
this stage? Answer:"``; the candidate's score is the logit of `` Yes`` minus
that of `` No``, and the K scores are softmaxed. The choice is always one of
the candidates. The prefix's keys and values are cached across selections; with
or without that cache the same token sequence is scored.

torch is imported inside methods only: importing ``ldengine.models`` must not
cost the CLI the seconds torch takes to import. Not thread-safe: one student
per thread.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from ldengine.cache import LRU, Memoised
from ldengine.contracts import Selection
from ldengine.errors import LDEngineError
from ldengine.models import lora
from ldengine.models.base import (JOINT, LAYOUTS, NO, ROWS, TAIL, YES, candidate_row, check_options, option_row,
                                  selection_context)
from ldengine.models.kv import cache_layers, expanded_cache, with_room
from ldengine.models.kvdisk import KVDisk

MEMO_SIZE = 4096  # selections remembered by prompt (a few hundred bytes each)
ROW_SPAN = 64         # rows layout: positions from a candidate's row's start to the query's (rows are 35-65 tokens)
ROW_CACHE_SIZE = 128  # candidates' keys and values kept (rows layout; about 2.3 MB each in float32, half in bfloat16)
ASSEMBLED_SIZE = 8    # rows layout: candidate lists whose joined keys and values are kept (~10 MB each in bfloat16)
PLAIN_HEADS = frozenset({"llama", "mistral", "qwen2"})  # logits = lm_head(last hidden state), nothing after


class TransformersStudent(Memoised):
    """A causal LM that selects among candidate functions and writes new ones."""

    def __init__(self, model: Any, tokenizer: Any, name: str, model_hash: str, device: str,
                 use_prefix_cache: bool = True, prefix_cache_size: int = 8,
                 memo_size: int = MEMO_SIZE, batch_size: int = 16):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.model_hash = model_hash
        self.device = device
        self.adapter_hash: str | None = None
        self.dtype = str(getattr(model, "dtype", "torch.float32")).replace("torch.", "")
        self.use_prefix_cache = use_prefix_cache
        self.batch_size = batch_size
        self._prefixes = LRU(prefix_cache_size)   # (prefix, weights version) -> its keys and values
        self._rows = LRU(ROW_CACHE_SIZE)          # (prefix, candidate, weights version) -> (length, keys and values)
        self._assembled = LRU(ASSEMBLED_SIZE)     # (prefix, candidates, weights version) -> joined keys and values
        self.layout = ROWS                        # how selections are read; an adapter brings its own
        self.near = 0                             # taught wordings a reading adapter reads each clause after
        self._memo = LRU(memo_size)               # (weights version, prompt parts) -> Selection
        self._weights_version = 0
        self._yes_id, self._no_id = answer_token_ids(tokenizer)
        self._pad_id = pad_token_id(tokenizer)
        self.usage: Counter = Counter()           # model_calls, tokens (read or written)
        self.kv_disk_root: Path | None = None     # where fixed texts' keys and values persist (None: off)
        self._disk: tuple[tuple, Any] | None = None
        self._trained_here = False                # weights changed by training in this process

    # ---- selection -------------------------------------------------------------

    def selection_prompt(self, prefix: str, query: str, options: list[str]) -> str:
        """The text read for one selection in the joint layout: prefix and query once, then each
        candidate's row (the rows layout reads no single text: see ``_rows_scores``)."""
        check_options(options)
        return prefix + selection_context(query) + "\n".join(option_row(o) for o in options)

    def select(self, prefix: str, query: str, options: list[str]) -> Selection:
        """Pick one of ``options``; its probabilities sum to 1."""
        return self.select_batch([(prefix, query, options)])[0]

    def select_batch(self, items: list[tuple[str, str, list[str]]]) -> list[Selection]:
        """Select for several decisions at once (e.g. games played together).

        Selection is a pure function of the prompt and the weights, so a prompt
        seen before (the same stage, state summary and candidates) is answered
        from a memo of the last ``memo_size`` selections. ``memo_size=0`` runs the
        model every time (benchmarks use it). The prompts not in the memo are
        scored together, ``batch_size`` at a time (see ``_scores_many``).
        """
        for _, _, options in items:
            check_options(options)
        keys = [(self._weights_version, p, q, tuple(o)) for p, q, o in items]
        todo = list({key: item for key, item in zip(keys, items) if key not in self._memo}.items())
        found: dict[tuple, Selection] = {}
        if todo:
            import torch
            with torch.inference_mode():
                for start in range(0, len(todo), self.batch_size):
                    chunk = todo[start:start + self.batch_size]
                    scores = self._scores_many([item for _, item in chunk])
                    found.update((key, _selection(s)) for (key, _), s in zip(chunk, scores))
        results = [found[key] if key in found else self._memo.get(key) for key in keys]
        for key, selection in zip(keys, results):
            self._memo.put(key, selection)
        return results

    def _scores(self, prefix: str, query: str, options: list[str]) -> Any:
        """The K candidates' scores (Yes minus No logits), a float tensor [K]."""
        return self._scores_many([(prefix, query, options)])[0]

    def _scores_many(self, items: list[tuple[str, str, list[str]]]) -> list[Any]:
        """Each selection's K scores, from one forward pass per distinct prefix.

        In the ``rows`` layout (the default) see ``_rows_scores``. In the
        ``joint`` layout a selection is packed into one row: its context (the query), then its K
        candidate rows one after another. A block mask lets each candidate's
        tokens see the prefix, the context and its own earlier tokens only, and
        each starts at the position right after the context: every token is read
        exactly as if the candidate followed the context alone, so the scores
        are those of K separate prompts (the prefix is the cached one). One pass
        instead of a context pass plus a candidates' pass halves the weights
        read from memory (most of a selection's time on a CPU), and the context's
        keys and values are not copied K times. Selections sharing a prefix run
        together, one row each.
        """
        groups: dict[str, list[int]] = {}
        for i, (prefix, _, _) in enumerate(items):
            groups.setdefault(prefix, []).append(i)
        out: list[Any] = [None] * len(items)
        if self.layout == ROWS:
            for prefix, members in groups.items():
                for i, scores in zip(members, self._rows_scores(prefix, [items[i] for i in members])):
                    out[i] = scores
            return out
        for prefix, members in groups.items():
            prefix_ids = self._encode(prefix, special=True)
            cached = self.use_prefix_cache and bool(prefix_ids)
            layers = self._cached_prefix(prefix, prefix_ids) if cached else None
            packed = [self._packed(prefix_ids if not cached else [], items[i][1], items[i][2],
                                   special=not prefix_ids) for i in members]
            for i, scores in zip(members, self._packed_scores(layers, len(prefix_ids) if cached else 0, packed)):
                out[i] = scores
        return out

    def _rows_scores(self, prefix: str, items: list[tuple[str, str, list[str]]]) -> list[Any]:
        """The ``rows`` layout: each candidate's row is read once after the prefix and kept
        (``_candidate_rows``); then one pass reads, per selection, the query and K tails.

        A selection's cache holds the prefix and its K rows one after another; a
        query token sees the prefix and the earlier query tokens; a tail token sees
        the prefix, its own candidate's row, the whole query and its own earlier
        tail tokens. Rows start at the position after the prefix (so a row's keys
        do not depend on the other candidates), the query ``ROW_SPAN`` positions
        later, the tails after the query: a candidate's score depends on the
        prefix, the query and its own row only, whatever the other candidates are.
        It is the `` Yes`` minus `` No`` logit after its tail, as in the ``joint`` layout.
        """
        import torch

        prefix_ids = self._encode(prefix, special=True)
        start = len(prefix_ids)
        layers = None
        if prefix_ids:
            layers = (self._cached_prefix(prefix, prefix_ids) if self.use_prefix_cache
                      else self._prefix_layers(prefix_ids))
        rows = self._candidate_rows(prefix, prefix_ids, layers, list(dict.fromkeys(o for _, _, opts in items for o in opts)))
        tail = self._encode(TAIL, special=False)
        contexts = [self._encode(selection_context(query), special=False) for _, query, _ in items]
        spans = [[rows[o][0] for o in options] for _, _, options in items]
        batch = len(items)
        room = max(sum(lengths) for lengths in spans)
        width = max(len(c) + len(lengths) * len(tail) for c, lengths in zip(contexts, spans))
        ids = torch.full((batch, width), self._pad_id, dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        mask = torch.zeros((batch, width, start + room + width), dtype=torch.bool)
        mask[:, :, :start] = True
        lasts = []
        for b, (context, lengths) in enumerate(zip(contexts, spans)):
            c, first = len(context), start + ROW_SPAN
            ids[b, :c] = torch.tensor(context)
            positions[b, :c] = torch.arange(first, first + c)
            new = start + room     # where this pass's tokens sit among the keys
            mask[b, :c, new:new + c] = torch.ones(c, c, dtype=torch.bool).tril()
            offset, last = start, []
            for r, length in enumerate(lengths):
                at = c + r * len(tail)
                ids[b, at:at + len(tail)] = torch.tensor(tail)
                positions[b, at:at + len(tail)] = torch.arange(first + c, first + c + len(tail))
                mask[b, at:at + len(tail), offset:offset + length] = True
                mask[b, at:at + len(tail), new:new + c] = True
                mask[b, at:at + len(tail), new + at:new + at + len(tail)] = torch.ones(
                    len(tail), len(tail), dtype=torch.bool).tril()
                offset += length
                last.append(at + len(tail) - 1)
            used = c + len(lengths) * len(tail)
            for t in range(used, width):   # padding sees the prefix and itself
                mask[b, t, new + t] = True
            lasts.append(last)
            self._count(1, used)
        cache = self._selection_cache(prefix, layers, start, room, [options for _, _, options in items], rows)
        keep = torch.tensor(sorted({t for last in lasts for t in last}))
        logits = self._answer_logits(keep, input_ids=ids.to(self.device),
                                     attention_mask=mask.unsqueeze(1).to(self.device),
                                     position_ids=positions.to(self.device), cache=cache, use_cache=True)
        return self._answer_scores(logits, keep, lasts)

    def _candidate_rows(self, prefix: str, prefix_ids: list[int], layers: list | None, options: list[str]) -> dict:
        """option -> (its row's token count, [(keys, values)] per layer), read after the prefix.

        Rows already read under the same prefix and weights come from a cache (in
        memory, then ``<cache>/kv/``); the others are read by ``_read_rows``.
        """
        import torch

        found, todo, start = {}, [], len(prefix_ids)
        disk = self._kv_disk() if self.use_prefix_cache and layers else None
        for option in options:
            hit = self._rows.get((prefix, option, self._weights_version)) if self.use_prefix_cache else None
            if hit is None and disk:
                ids = self._encode(candidate_row(option), special=False)
                stored = disk.get(ids, after=prefix_ids)
                hit = (len(ids), stored) if stored is not None else None
                if hit is not None:
                    self._rows.put((prefix, option, self._weights_version), hit)
            if hit is None:
                todo.append(option)
            else:
                found[option] = hit
        if not todo:
            return found
        seqs = [self._encode(candidate_row(o), special=not layers) for o in todo]
        # With grad (training) the rows are read together in one pass; otherwise each alone, so
        # that its keys and values never depend on which rows were read beside it (the padding
        # changes how bfloat16 sums are split: up to 0.009 in a probability) and a row read
        # here equals the one another process stored.
        together = torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        every = self._read_rows(layers, start, seqs) if together else \
            [kv for seq in seqs for kv in self._read_rows(layers, start, [seq])]
        for option, seq, kv in zip(todo, seqs, every):
            found[option] = (len(seq), kv)
            if self.use_prefix_cache:
                self._rows.put((prefix, option, self._weights_version), found[option])
            if disk:
                disk.put(seq, kv, after=prefix_ids)
        return found

    def _read_rows(self, layers: list | None, start: int, seqs: list[list[int]]) -> list[list]:
        """Each row's [(keys, values)] per layer, the rows read in one pass, each at the positions
        right after the prefix, seeing the prefix and its own earlier tokens only."""
        import torch

        n, width = len(seqs), max(len(q) for q in seqs)
        ids = torch.full((n, width), self._pad_id, dtype=torch.long)
        real = torch.zeros((n, width), dtype=torch.bool)
        for j, seq in enumerate(seqs):
            ids[j, :len(seq)] = torch.tensor(seq)
            real[j, :len(seq)] = True
        own = torch.ones(width, width, dtype=torch.bool).tril() & (real.unsqueeze(1) | torch.eye(width, dtype=torch.bool))
        mask = torch.cat([torch.ones(n, width, start, dtype=torch.bool), own], dim=2).unsqueeze(1)
        positions = (start + torch.arange(width)).expand(n, width)
        cache = expanded_cache(layers, n, self.model.config) if layers else None
        out = self.model.get_decoder()(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                       position_ids=positions.to(self.device), cache=cache, use_cache=True)
        self._count(0, sum(len(q) for q in seqs))
        every = cache_layers(out.cache)
        return [[(k[j:j + 1, :, start:start + len(seq)].clone(), v[j:j + 1, :, start:start + len(seq)].clone())
                 for k, v in every] for j, seq in enumerate(seqs)]

    def _selection_cache(self, prefix: str, layers: list | None, start: int, room: int,
                         chosen: list[list[str]], rows: dict) -> Any:
        """A ``DynamicCache`` per selection: the prefix, then its candidates' rows, zero-padded to
        ``room``. Each selection's joined keys and values are kept for the last
        ``ASSEMBLED_SIZE`` candidate lists: a stage offers the same candidates again and again,
        and joining 30 layers' rows cost 5-9 ms of a 90 ms selection (the cache's first
        ``torch.cat`` copies them, so the kept tensors are never written)."""
        import torch
        from transformers import DynamicCache

        joined = []
        for options in chosen:
            key = (prefix, tuple(options), self._weights_version)
            found = self._assembled.get(key) if self.use_prefix_cache else None
            if found is None:
                found = []
                for index in range(self.model.config.num_hidden_layers):
                    k = [rows[o][1][index][0] for o in options]
                    v = [rows[o][1][index][1] for o in options]
                    if layers:
                        k, v = [layers[index][0]] + k, [layers[index][1]] + v
                    found.append((torch.cat(k, dim=2), torch.cat(v, dim=2)))
                if self.use_prefix_cache:
                    self._assembled.put(key, found)
            joined.append(found)
        data = []
        for index in range(self.model.config.num_hidden_layers):
            keys, values = [], []
            for found in joined:
                key_t, value_t = found[index]
                pad = start + room - key_t.shape[2]
                if pad:
                    key_t = torch.cat([key_t, key_t.new_zeros(1, key_t.shape[1], pad, key_t.shape[3])], dim=2)
                    value_t = torch.cat([value_t, value_t.new_zeros(1, value_t.shape[1], pad, value_t.shape[3])], dim=2)
                keys.append(key_t)
                values.append(value_t)
            data.append((keys[0], values[0]) if len(joined) == 1 else (torch.cat(keys), torch.cat(values)))
        return DynamicCache(ddp_cache_data=data, config=self.model.config)

    def _packed(self, head: list[int], query: str, options: list[str], special: bool) -> tuple:
        """(ids, block of each token: 0 context, r for candidate r, positions, last token of each candidate)."""
        context = head + self._encode(selection_context(query), special=special and not head)
        ids, blocks, positions, lasts = list(context), [0] * len(context), list(range(len(context))), []
        for r, option in enumerate(options, start=1):
            row = self._encode(option_row(option), special=False)
            ids += row
            blocks += [r] * len(row)
            positions += range(len(context), len(context) + len(row))
            lasts.append(len(ids) - 1)
        self._count(1, len(ids))
        return ids, blocks, positions, lasts

    def _packed_scores(self, layers: list | None, start: int, packed: list[tuple]) -> list[Any]:
        import torch

        batch, width = len(packed), max(len(p[0]) for p in packed)
        ids = torch.full((batch, width), self._pad_id, dtype=torch.long)
        blocks = torch.full((batch, width), -1, dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        for row, (seq, block, pos, _) in enumerate(packed):
            ids[row, :len(seq)] = torch.tensor(seq)
            blocks[row, :len(seq)] = torch.tensor(block)
            positions[row, :len(seq)] = torch.tensor(pos)
        mask = _block_mask(blocks, start)
        cache = expanded_cache(layers, batch, self.model.config) if layers else None
        keep = torch.tensor(sorted({t for p in packed for t in p[3]}))
        logits = self._answer_logits(keep, input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                     position_ids=(positions + start).to(self.device), cache=cache, use_cache=True)
        return self._answer_scores(logits, keep, [p[3] for p in packed])

    def _answer_logits(self, keep: Any, **inputs: Any) -> Any:
        """The `` Yes`` and `` No`` logits ([batch, len(keep), 2]) at the positions ``keep``.

        Where the model's head is a plain linear map of the decoder's last hidden
        state (``PLAIN_HEADS``), only its two answer rows are read: the whole head
        (49,152 rows for SmolLM2) is the largest matrix of the model, and reading it
        for K positions cost 3.7 ms of a 93 ms selection (bfloat16, 2 cores). The
        logits are the same dot products as the full head's.
        """
        import torch

        keep = keep.to(self.device)
        answers = [self._yes_id, self._no_id]
        if getattr(self.model.config, "model_type", None) not in PLAIN_HEADS:
            return self.model(**inputs, logits_to_keep=keep).logits[..., answers]
        hidden = self.model.get_decoder()(**inputs).last_hidden_state[:, keep]
        head = self.model.get_output_embeddings()
        return torch.nn.functional.linear(hidden, head.weight[answers],
                                          None if head.bias is None else head.bias[answers])

    def _answer_scores(self, logits: Any, keep: Any, lasts: list[list[int]]) -> list[Any]:
        """Per batch row, `` Yes`` minus `` No`` at each candidate's last token (``lasts``,
        positions in the row), from the answer logits (``_answer_logits``) kept at ``keep``."""
        where = {int(t): i for i, t in enumerate(keep)}
        scores = []
        for row, last in enumerate(lasts):
            at = logits[row, [where[t] for t in last]]
            scores.append((at[:, 0] - at[:, 1]).float())
        return scores

    def _count(self, calls: int, tokens: int) -> None:
        self.usage["model_calls"] += calls
        self.usage["tokens"] += tokens

    def _cached_prefix(self, prefix: str, prefix_ids: list[int]) -> list:
        key = (prefix, self._weights_version)
        layers = self._prefixes.get(key)
        if layers is None:
            disk = self._kv_disk()
            layers = disk.get(prefix_ids) if disk else None
            if layers is None:
                layers = self._prefix_layers(prefix_ids)
                if disk:
                    disk.put(prefix_ids, layers)
            self._prefixes.put(key, layers)
        return layers

    def _kv_disk(self) -> Any:
        """The on-disk store of the fixed texts' keys and values for these weights
        (``ldengine.models.kvdisk``), or None: when off, while training (with grad), and
        for weights trained in this process (they change every step)."""
        import torch

        if self.kv_disk_root is None or self._trained_here or not torch.is_inference_mode_enabled():
            return None
        if self._disk is None or self._disk[0] != (self._weights_version, self.kv_disk_root):
            self._disk = ((self._weights_version, self.kv_disk_root), KVDisk.for_student(self, self.kv_disk_root))
        return self._disk[1]

    def _prefix_layers(self, prefix_ids: list[int]) -> list:
        """Run the prefix once and keep its keys and values (with grad when training)."""
        import torch

        ids = torch.tensor([prefix_ids], device=self.device)
        out = self.model.get_decoder()(input_ids=ids, use_cache=True)   # its keys and values only: no head
        self._count(0, len(prefix_ids))
        return cache_layers(out.cache)

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

    def generate_batch(self, prompts: list[str], prefix: str = "", max_new_tokens: int = 48,
                       stop: Callable[[str], bool] | None = None, chat: bool = True,
                       temperature: float = 0.0, seed: int = 0,
                       allowed: list[Callable[[list[int]], Any]] | None = None,
                       scores: list[float] | None = None) -> list[str]:
        """Greedy answers to several prompts that share ``prefix`` (e.g. a task's rules);
        with ``temperature`` > 0, sampled ones (seeded: the same call gives the same texts).

        The text read for prompt i is ``prefix + prompts[i]`` (inside the chat
        template when ``chat``); the prefix's keys and values are computed once
        and kept, so each call runs only the prompts and the answers. Prompts are
        run together, right-padded, each at its own positions; an answer ends at
        the end-of-sequence token, after ``max_new_tokens``, or as soon as
        ``stop(answer_so_far)`` is true. Used by the text-answering agents.
        ``allowed`` (one per prompt) constrains the answers: ``allowed[i](tokens_so_far)`` is a
        boolean tensor over the vocabulary, the tokens answer i may take next (a grammar's,
        ``ldengine.rulelang``). ``scores``, when given, is filled with each answer's
        log-probability (the sum over its tokens, under the constrained distribution).
        """
        if not prompts:
            return []
        import torch

        head, tail = self._chat_parts() if chat else ("", "")
        prefix_ids = self._encode(head + prefix, special=True)
        rows = [self._encode(p + tail, special=not prefix_ids) for p in prompts]
        with torch.inference_mode():
            pick = _sampler(temperature, seed, self.device)
            answers = self._greedy(head + prefix, prefix_ids, rows, max_new_tokens, stop, pick, allowed, scores)
        return [self.tokenizer.decode(a, skip_special_tokens=True) for a in answers]

    def _chat_parts(self) -> tuple[str, str]:
        """The chat template's text before and after a user message (no template: none)."""
        if not getattr(self.tokenizer, "chat_template", None):
            return "", ""
        marker = "\x00ldengine\x00"
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": marker}],
                                                  tokenize=False, add_generation_prompt=True)
        head, _, tail = text.partition(marker)
        return head, tail

    def _greedy(self, prefix: str, prefix_ids: list[int], rows: list[list[int]], max_new_tokens: int,
                stop: Callable[[str], bool] | None, pick: Callable | None = None,
                allowed: list[Callable[[list[int]], Any]] | None = None,
                scores: list[float] | None = None) -> list[list[int]]:
        import torch

        layers = None
        if prefix_ids:
            layers = (self._cached_prefix(prefix, prefix_ids)
                      if self.use_prefix_cache else self._prefix_layers(prefix_ids))
        start = len(prefix_ids)
        ids, mask, last = _pad_right(rows, self._pad_id, self.device)
        batch, width = ids.shape
        positions = (start + torch.arange(width, device=self.device)).expand(batch, width)
        mask = torch.cat([mask.new_ones(batch, start), mask], dim=1)
        keep = torch.unique(last)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         cache=expanded_cache(layers, batch, self.model.config) if layers else None,
                         use_cache=True, logits_to_keep=keep)
        logits = out.logits[torch.arange(batch, device=self.device), torch.searchsorted(keep, last)]
        self._count(len(rows), sum(len(r) for r in rows))
        answers: list[list[int]] = [[] for _ in rows]
        done = [False] * batch
        cache = with_room(out.cache, max_new_tokens)
        position = last + start + 1
        eos = self.tokenizer.eos_token_id
        if scores is not None:
            scores[:] = [0.0] * batch
        for step in range(max_new_tokens):
            if allowed is not None:
                logits = _masked(logits, [None if done[row] else allowed[row](answers[row]) for row in range(batch)])
            tokens = pick(logits) if pick else logits.argmax(-1)
            if scores is not None:
                chosen = torch.log_softmax(logits.float(), dim=-1).gather(1, tokens.unsqueeze(1)).squeeze(1)
                for row in range(batch):
                    if not done[row]:
                        scores[row] += float(chosen[row])
            for row in range(batch):
                if not done[row]:
                    token = int(tokens[row])
                    if token == eos:
                        done[row] = True
                        continue
                    answers[row].append(token)
                    done[row] = (stop is not None and stop(self.tokenizer.decode(answers[row])))
            self._count(0, batch - sum(done))
            if all(done) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            out = self.model(input_ids=tokens.unsqueeze(1), attention_mask=mask,
                             position_ids=position.unsqueeze(1), cache=cache,
                             use_cache=True)
            logits = out.logits[:, -1]
            position = position + 1
        return answers

    def _generation_ids(self, prompt: str, chat: bool) -> Any:
        import torch

        if chat and getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                      tokenize=False, add_generation_prompt=True)
            return torch.tensor([self._encode(text, special=False)], device=self.device)
        return torch.tensor([self._encode(prompt, special=True)], device=self.device)

    # ---- LoRA --------------------------------------------------------------------

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

    def _train_steps(self, examples: list[tuple], batches: list[list[int]], optimizer: Any,
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

    def _batch_loss(self, rows: list[tuple]) -> Any:
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
        return total / len(rows)

    def _text_loss(self, rows: list[tuple[str, str, str]], chat: bool) -> Any:
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
        return total / count

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

    def _after_weights_change(self) -> None:
        """New weights: forget cached prefixes and record the adapter's identity."""
        self._weights_version += 1
        self._prefixes.clear()
        self._rows.clear()
        self._assembled.clear()
        self._memo.clear()
        self.adapter_hash = lora.adapter_hash(self.model)


def answer_token_ids(tokenizer: Any) -> tuple[int, int]:
    """Token ids of `` Yes`` and `` No``; each must be one token."""
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in (YES, NO)]
    if any(len(i) != 1 for i in ids):
        raise LDEngineError("this tokenizer does not encode ' Yes' and ' No' as single tokens, "
                            "so it cannot be used as a selecting student")
    return ids[0][0], ids[1][0]


def pad_token_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def _selection(logits: Any) -> Selection:
    probs = logits.double().softmax(-1)
    return Selection(index=int(probs.argmax()), probabilities=[float(p) for p in probs])


def _block_mask(blocks: Any, start: int) -> Any:
    """The [batch, 1, width, start + width] boolean mask of packed selections.

    ``blocks`` gives each token's block (0 the context, r > 0 candidate r, -1
    padding). A token sees the ``start`` cached prefix tokens, and the earlier
    tokens of the context and of its own block; padding sees the prefix only.
    """
    import torch

    width = blocks.shape[1]
    earlier = torch.ones(width, width, dtype=torch.bool).tril()
    mine = blocks.unsqueeze(2) == blocks.unsqueeze(1)
    context = (blocks == 0).unsqueeze(1) & (blocks >= 0).unsqueeze(2)
    packed = (mine | context) & earlier & (blocks >= 0).unsqueeze(1)
    prefix = torch.ones(blocks.shape[0], width, start, dtype=torch.bool)
    if start == 0:  # no cached prefix: padding sees itself, so no row of the mask is empty
        packed = packed | torch.eye(width, dtype=torch.bool)
    return torch.cat([prefix, packed], dim=2).unsqueeze(1)


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


def _masked(logits: Any, masks: list) -> Any:
    """``logits`` with every token a row's mask does not allow at -inf (None: the row is free)."""
    import torch
    logits = logits.clone()
    for row, mask in enumerate(masks):
        if mask is not None:
            keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
            keep[:mask.shape[0]] = mask[:logits.shape[-1]].to(logits.device)
            logits[row, ~keep] = float("-inf")
    return logits


def _sampler(temperature: float, seed: int, device: Any) -> Callable | None:
    """None (greedy) at temperature 0, else a seeded sampler from softmax(logits / temperature)."""
    if temperature <= 0:
        return None
    import torch
    generator = torch.Generator(device=device).manual_seed(seed)

    def pick(logits: Any) -> Any:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return pick
