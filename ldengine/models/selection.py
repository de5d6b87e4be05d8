"""The student on Hugging Face transformers, part 1: its state, and selection (the
student itself, with generation, training and adapters, is ``ldengine.models.student``).

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

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ldengine.cache import LRU, Memoised
from ldengine.contracts import Selection
from ldengine.errors import LDEngineError
from ldengine.models import lora
from ldengine.models.base import NO, ROWS, TAIL, YES, candidate_row, check_options, option_row, selection_context
from ldengine.models.kv import cache_layers, expanded_cache
from ldengine.models.kvdisk import KVDisk

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import DynamicCache, GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

    class CausalLM(PreTrainedModel, GenerationMixin):
        """What ``AutoModelForCausalLM`` loads: a model with a language-modelling head, which generates."""


MEMO_SIZE = 4096  # selections remembered by prompt (a few hundred bytes each)
ROW_SPAN = 64         # rows layout: positions from a candidate's row's start to the query's (rows are 35-65 tokens)
ROW_CACHE_SIZE = 128  # candidates' keys and values kept (rows layout; about 2.3 MB each in float32, half in bfloat16)
ASSEMBLED_SIZE = 8    # rows layout: candidate lists whose joined keys and values are kept (~10 MB each in bfloat16)
PLAIN_HEADS = frozenset({"llama", "mistral", "qwen2"})  # logits = lm_head(last hidden state), nothing after


class SelectingStudent(Memoised):
    """A causal LM that selects among candidate functions (its state and caches)."""

    def __init__(self, model: CausalLM, tokenizer: PreTrainedTokenizerBase, name: str, model_hash: str,
                 device: str, use_prefix_cache: bool = True, prefix_cache_size: int = 8,
                 memo_size: int = MEMO_SIZE, batch_size: int = 16):
        self.model: CausalLM | PeftModel = model.eval()
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
        self._disk: tuple[tuple, KVDisk] | None = None
        self._trained_here = False                # weights changed by training in this process

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

    def _scores(self, prefix: str, query: str, options: list[str]) -> torch.Tensor:
        """The K candidates' scores (Yes minus No logits), a float tensor [K]."""
        return self._scores_many([(prefix, query, options)])[0]

    def _scores_many(self, items: list[tuple[str, str, list[str]]]) -> list[torch.Tensor]:
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
        out: list[torch.Tensor | None] = [None] * len(items)
        if self.layout == ROWS:
            for prefix, members in groups.items():
                for i, scores in zip(members, self._rows_scores(prefix, [items[i] for i in members])):
                    out[i] = scores
            return cast("list[torch.Tensor]", out)     # every item scored
        for prefix, members in groups.items():
            prefix_ids = self._encode(prefix, special=True)
            cached = self.use_prefix_cache and bool(prefix_ids)
            layers = self._cached_prefix(prefix, prefix_ids) if cached else None
            packed = [self._packed(prefix_ids if not cached else [], items[i][1], items[i][2],
                                   special=not prefix_ids) for i in members]
            for i, scores in zip(members, self._packed_scores(layers, len(prefix_ids) if cached else 0, packed)):
                out[i] = scores
        return cast("list[torch.Tensor]", out)         # every item scored

    def _rows_scores(self, prefix: str, items: list[tuple[str, str, list[str]]]) -> list[torch.Tensor]:
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
                         chosen: list[list[str]], rows: dict) -> DynamicCache:
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

    def _packed_scores(self, layers: list | None, start: int, packed: list[tuple]) -> list[torch.Tensor]:
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

    def _answer_logits(self, keep: torch.Tensor, **inputs: object) -> torch.Tensor:
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

    def _answer_scores(self, logits: torch.Tensor, keep: torch.Tensor,
                       lasts: list[list[int]]) -> list[torch.Tensor]:
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

    def _kv_disk(self) -> KVDisk | None:
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

    def _after_weights_change(self) -> None:
        """New weights: forget cached prefixes and record the adapter's identity."""
        self._weights_version += 1
        self._prefixes.clear()
        self._rows.clear()
        self._assembled.clear()
        self._memo.clear()
        self.adapter_hash = lora.adapter_hash(self.model)


def answer_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """Token ids of `` Yes`` and `` No``; each must be one token."""
    ids = [tokenizer(word, add_special_tokens=False)["input_ids"] for word in (YES, NO)]
    if any(len(i) != 1 for i in ids):
        raise LDEngineError("this tokenizer does not encode ' Yes' and ' No' as single tokens, "
                            "so it cannot be used as a selecting student")
    return ids[0][0], ids[1][0]


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def _selection(logits: torch.Tensor) -> Selection:
    probs = logits.double().softmax(-1)
    return Selection(index=int(probs.argmax()), probabilities=[float(p) for p in probs])


def _block_mask(blocks: torch.Tensor, start: int) -> torch.Tensor:
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
