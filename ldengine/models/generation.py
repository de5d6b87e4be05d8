"""The student, part 2: writing text (a new function for an emergency, chat answers),
greedy or sampled, one prompt or a batch sharing a prefix. torch is imported inside
methods only."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence, cast

from ldengine.models.kv import expanded_cache, with_room
from ldengine.models.selection import SelectingStudent

if TYPE_CHECKING:
    import torch


class GeneratingStudent(SelectingStudent):
    """A selecting student that also writes text."""

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
        options: dict[str, object] = {"do_sample": sample, "max_new_tokens": max_new_tokens,
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
                       allowed: Sequence[Callable[[list[int]], torch.Tensor]] | None = None,
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
        return [cast(str, self.tokenizer.decode(a, skip_special_tokens=True)) for a in answers]

    def _chat_parts(self) -> tuple[str, str]:
        """The chat template's text before and after a user message (no template: none)."""
        if not getattr(self.tokenizer, "chat_template", None):
            return "", ""
        marker = "\x00ldengine\x00"
        text = cast(str, self.tokenizer.apply_chat_template([{"role": "user", "content": marker}],
                                                            tokenize=False, add_generation_prompt=True))
        head, _, tail = text.partition(marker)
        return head, tail

    def _greedy(self, prefix: str, prefix_ids: list[int], rows: list[list[int]], max_new_tokens: int,
                stop: Callable[[str], bool] | None,
                pick: Callable[[torch.Tensor], torch.Tensor] | None = None,
                allowed: Sequence[Callable[[list[int]], torch.Tensor]] | None = None,
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
                    done[row] = (stop is not None and stop(cast(str, self.tokenizer.decode(answers[row]))))
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

    def _generation_ids(self, prompt: str, chat: bool) -> torch.Tensor:
        import torch

        if chat and getattr(self.tokenizer, "chat_template", None):
            text = cast(str, self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                                tokenize=False, add_generation_prompt=True))
            return torch.tensor([self._encode(text, special=False)], device=self.device)
        return torch.tensor([self._encode(prompt, special=True)], device=self.device)


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


def _masked(logits: torch.Tensor, masks: list[torch.Tensor | None]) -> torch.Tensor:
    """``logits`` with every token a row's mask does not allow at -inf (None: the row is free)."""
    import torch
    logits = logits.clone()
    for row, mask in enumerate(masks):
        if mask is not None:
            keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
            keep[:mask.shape[0]] = mask[:logits.shape[-1]].to(logits.device)
            logits[row, ~keep] = float("-inf")
    return logits


def _sampler(temperature: float, seed: int, device: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """None (greedy) at temperature 0, else a seeded sampler from softmax(logits / temperature)."""
    if temperature <= 0:
        return None
    import torch
    generator = torch.Generator(device=device).manual_seed(seed)

    def pick(logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return pick
