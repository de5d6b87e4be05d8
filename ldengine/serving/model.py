"""The served student's forward passes: greedy generation, the next token of a list of
prompts, the log-probabilities of a prompt's own tokens; each pass takes its turn on
the model (``Turns``).

A list of prompts runs in one batched pass over its common token prefix, whose keys
and values are computed once. No pass holds more than ``PASS_TOKENS`` tokens. torch
is imported inside the functions that run the model, so ``ldengine --help`` stays fast.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, cast

from ldengine.models.kv import cache_layers, expanded_cache
from ldengine.models.selection import pad_token_id
from ldengine.serving.limits import Limits, RequestError
from ldengine.serving.turns import Turns

if TYPE_CHECKING:
    import torch

    from ldengine.models.kv import PrefixLayers
    from ldengine.models.student import TransformersStudent

PASS_TOKENS = 256            # tokens (padded) in one forward pass, i.e. one turn on the model: a long
                             # prompt runs in chunks of this many, prompt tails in groups of at most this
                             # many (on 2 CPU cores about 0.5 s a pass; 1,024 made a 1-token request wait 8 s)
ROW_TOKENS = 8192            # rows x (shared prefix + padded tail) in one pass: each row holds its own copy of the
#                              prefix's keys and values, so this bounds a pass's memory (32 one-token prompts over
#                              a 2,035-token prefix took the server from 0.96 to 4.0 GB when only tails counted)


@dataclass
class Token:
    """One generated token with its log-probability and the top alternatives."""
    id: int
    text: str
    logprob: float | None                      # None: a prompt's first token
    top: list[tuple[int, str, float]] | None = field(default_factory=list)   # (id, text, logprob)


@dataclass
class Completion:
    """What the model wrote for one prompt."""
    text: str
    tokens: list[Token]
    finish_reason: str      # "stop" (end of sequence or a stop string) or "length"
    prompt_tokens: int


class ServedModel:
    """The student with the model-level operations the API needs, each forward pass
    taking its turn on the model (``self.turns``).

    Uses the ``TransformersStudent``'s model and tokenizer directly: the API
    needs per-token log-probabilities and arbitrary chat messages, which the
    student's own ``generate`` does not expose.
    """

    def __init__(self, student: TransformersStudent, name: str, limits: Limits | None = None):
        self.student, self.name = student, name
        self.created = int(time.time())
        self.limits = limits or Limits()
        self.turns = Turns(self.limits)
        self._usage_lock = threading.Lock()
        self.context_length = int(getattr(student.model.config, "max_position_embeddings", 2048))
        self.eos_ids = _eos_ids(student)

    def chat_ids(self, messages: list[dict]) -> list[int]:
        """The prompt's tokens: the messages in the chat template, ready for the answer."""
        tokenizer = self.student.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            return tokenizer(text, add_special_tokens=True)["input_ids"]
        try:
            text = cast(str, tokenizer.apply_chat_template(messages, tokenize=False,     # untokenized: a str
                                                           add_generation_prompt=True))
        except Exception as exc:  # the template's own checks (roles, order) judge the user's messages
            raise RequestError(f"the chat template refused the messages: {str(exc)[:200]}",
                               param="messages") from None
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def text_ids(self, prompt: str) -> list[int]:
        """A raw prompt's tokens, encoded as the student encodes its selection text."""
        return self.student.tokenizer(prompt, add_special_tokens=True)["input_ids"]

    @contextmanager
    def serving(self) -> Iterator[None]:
        """One admitted request on this thread, its passes taking turns (see ``Turns``)."""
        with self.turns.request(), _inference():
            yield

    def generate(self, ids: list[int], max_tokens: int, stops: list[str], top_n: int,
                 on_token: Callable[[list[Token]], bool] | None = None) -> Completion:
        """Greedy decoding with a key/value cache, stopping at end of sequence, a stop
        string (cut from the text, as the OpenAI API does) or ``max_tokens``. ``on_token``
        (a stream) sees the tokens written so far after each one; False from it stops the
        writing (the client has gone)."""
        tokens, finish = self._decode(ids, max_tokens, stops, top_n, on_token)
        self._count(1, len(ids) + len(tokens))
        return self.finish(tokens, stops, finish, len(ids))

    def finish(self, tokens: list[Token], stops: list[str], reason: str, prompt_tokens: int) -> Completion:
        """The answer's text (decoded whole, so characters split over tokens come out
        right), cut before the first stop string with the tokens that begin before it."""
        decode = self.student.tokenizer.decode
        text = cast(str, decode([t.id for t in tokens]))
        cuts = [text.find(s) for s in stops if s in text]
        if not cuts:
            return Completion(text, tokens, reason, prompt_tokens)
        cut = min(cuts)
        kept = [t for i, t in enumerate(tokens) if len(decode([u.id for u in tokens[:i]])) < cut]
        return Completion(text[:cut], kept, "stop", prompt_tokens)

    def _decode(self, ids: list[int], max_tokens: int, stops: list[str], top_n: int,
                on_token: Callable[[list[Token]], bool] | None = None) -> tuple[list[Token], str]:
        """The prompt runs in chunks (``_passes``), then one turn per written token."""
        import torch

        model, device = self.student.model, self.student.device
        cache, _, logits = self._passes(ids, 0, score=False)
        tokens: list[Token] = []
        while True:
            with self.turns.step():
                if tokens:
                    out = model(input_ids=torch.tensor([[tokens[-1].id]], device=device), cache=cache,
                                use_cache=True)
                    cache, logits = out.cache, out.logits[0, -1]
                token = self._token(cast("torch.Tensor", logits), top_n)    # ``ids`` is not empty
            if token.id in self.eos_ids:
                return tokens, "stop"
            tokens.append(token)
            if stops and any(s in self.student.tokenizer.decode([t.id for t in tokens]) for s in stops):
                return tokens, "stop"
            if len(tokens) == max_tokens:
                return tokens, "length"
            if on_token is not None and not on_token(tokens):
                return tokens, "cancelled"

    def next_tokens(self, rows: list[list[int]], top_n: int) -> list[Token]:
        """The greedy next token of each prompt with its top-``top_n`` log-probabilities.

        The prompts' common token prefix runs once and its keys and values serve
        every row (right-padded, each token at its own position), as the
        in-process student scores its K candidates over one shared context.
        """
        shared = common_prefix_length(rows)
        tails = [r[shared:] for r in rows]
        layers = _layers(self._passes(rows[0][:shared], 0, score=False)[0])
        tokens = []
        for group in _groups(tails, shared):
            if len(group[0]) > PASS_TOKENS:      # a long tail runs alone, in passes over the prefix
                tokens.append(self._token(cast("torch.Tensor",     # a tail has tokens
                                               self._passes(group[0], 0, False, layers, shared)[2]), top_n))
                continue
            with self.turns.step():
                tokens += [self._token(logits, top_n) for logits in self._tails(layers, shared, group, last_only=True)]
        self._count(len(rows), shared + sum(len(t) for t in tails))
        return tokens

    def prompt_tokens(self, rows: list[list[int]], top_n: int) -> list[list[Token]]:
        """Each prompt's own tokens with their log-probabilities given what precedes them
        (``echo``): how a client scores a given continuation exactly, whatever its rank.
        The first token has none (nothing precedes it). The common prefix is scored
        once; no pass holds more than ``PASS_TOKENS`` tokens' logits."""
        shared = common_prefix_length(rows)
        tails = [r[shared:] for r in rows]
        cache, head, last = self._passes(rows[0][:shared], top_n, score=True)
        layers, scored = _layers(cache), []
        head = [(None, None)] + head if shared else []
        for group in _groups(tails, shared):
            firsts = [self._scored(cast("torch.Tensor", last).unsqueeze(0), t[:1], top_n)     # a prefix: logits
                      if shared else [(None, None)] for t in group]
            if len(group[0]) > PASS_TOKENS:      # a long tail runs alone, in passes over the prefix
                scored.append(head + firsts[0] + self._passes(group[0], top_n, True, layers, shared)[1])
                continue
            with self.turns.step():
                for tail, first, logits in zip(group, firsts, self._tails(layers, shared, group, last_only=False)):
                    scored.append(head + first + self._scored(logits[:len(tail) - 1], tail[1:], top_n))
        self._count(len(rows), shared + sum(len(t) for t in tails))
        return [self._tokens(row, values) for row, values in zip(rows, scored)]

    def _tokens(self, row: list[int], scored: list[tuple]) -> list[Token]:
        texts = self.student.tokenizer.batch_decode([[i] for i in row])
        return [Token(i, text, lp, top) for i, text, (lp, top) in zip(row, texts, scored)]

    def _passes(self, ids: list[int], top_n: int, score: bool, layers: PrefixLayers | None = None,
                offset: int = 0) -> tuple[Any, list[tuple], torch.Tensor | None]:
        """Run ``ids`` in chunks of ``PASS_TOKENS``, one turn each, after the ``offset``
        tokens whose keys and values are ``layers`` (none: from the start): (the key/value
        cache, the scores of ``ids[1:]`` when ``score``, the logits after the last token)."""
        import torch

        if not ids:
            return None, [], None
        model, device = self.student.model, self.student.device
        cache = expanded_cache(layers, 1, model.config) if layers else None   # copies, never grows, ``layers``
        scored: list[tuple] = []
        for start in range(0, len(ids), PASS_TOKENS):
            chunk = ids[start:start + PASS_TOKENS]
            where = torch.arange(offset + start, offset + start + len(chunk), device=device).unsqueeze(0)
            with self.turns.step():
                out = model(input_ids=torch.tensor([chunk], device=device), use_cache=True, cache=cache,
                            position_ids=where, logits_to_keep=0 if score else 1)
                cache, logits = out.cache, out.logits[0]
                if score:
                    targets = ids[start + 1:start + len(chunk) + 1]
                    scored += self._scored(logits[:len(targets)], targets, top_n)
        return cache, scored, logits[-1]

    def _tails(self, layers: PrefixLayers | None, shared: int, tails: list[list[int]],
               last_only: bool) -> torch.Tensor:
        """The logits of right-padded ``tails`` run over the prefix's keys and values:
        [rows, vocab] after each tail's last token, or [rows, width, vocab]."""
        import torch

        model, device = self.student.model, self.student.device
        ids, mask, positions = _right_padded(tails, shared, pad_token_id(self.student.tokenizer))
        last = torch.tensor([len(t) - 1 for t in tails], device=device)
        ends = torch.unique(last)    # the positions whose logits are kept when ``last_only``
        cache = expanded_cache(layers, len(tails), model.config) if layers else None
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    cache=cache, use_cache=True, logits_to_keep=ends if last_only else 0)
        if not last_only:
            return out.logits
        return out.logits[torch.arange(len(tails), device=device), torch.searchsorted(ends, last)]

    def _scored(self, logits: torch.Tensor, targets: list[int], top_n: int) -> list[tuple]:
        """(log-probability of each target under its row of logits, its top-``top_n``)."""
        import torch

        if not targets:
            return []
        logits = logits.float()
        wanted = torch.tensor(targets, device=logits.device).unsqueeze(1)
        logprobs = (logits.gather(1, wanted).squeeze(1) - logits.logsumexp(-1)).tolist()
        tops: list = [None] * len(targets)
        if top_n:
            values, ids = logits.log_softmax(-1).topk(top_n)
            tops = [[(int(i), self._text(int(i)), float(v)) for v, i in zip(vs, its)] for vs, its in zip(values, ids)]
        return [(lp, top if top is not None else []) for lp, top in zip(logprobs, tops)]

    def _token(self, logits: torch.Tensor, top_n: int) -> Token:
        """The argmax token of one position, with log-softmax values (float64)."""
        logprobs = logits.double().log_softmax(-1)
        best = int(logprobs.argmax())
        top = []
        if top_n:
            values, ids = logprobs.topk(top_n)
            top = [(int(i), self._text(int(i)), float(v)) for v, i in zip(values, ids)]
        return Token(best, self._text(best), float(logprobs[best]), top)

    def _text(self, token_id: int) -> str:
        return cast(str, self.student.tokenizer.decode([token_id]))

    def token_bytes(self, token: Token) -> list[int]:
        """The token's own bytes (OpenAI's ``bytes``): for a byte-level BPE token that
        holds part of a character, its raw bytes rather than the replacement character."""
        if "\ufffd" not in token.text:
            return list(token.text.encode())
        piece = self.student.tokenizer.convert_ids_to_tokens(token.id)
        if isinstance(piece, str) and all(c in _BYTE_DECODER for c in piece):
            return [_BYTE_DECODER[c] for c in piece]
        return list(token.text.encode())

    def _count(self, calls: int, tokens: int) -> None:
        with self._usage_lock:
            self.student.usage["model_calls"] += calls
            self.student.usage["tokens"] += tokens


def _layers(cache: Any) -> PrefixLayers | None:
    """A prefix cache's (keys, values) per layer, or None for no prefix."""
    return cache_layers(cache) if cache is not None else None


def _eos_ids(student: TransformersStudent) -> set[int]:
    """Every id that ends an answer: the tokenizer's and the generation config's."""
    ids = {student.tokenizer.eos_token_id}
    configured = getattr(getattr(student.model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


def _right_padded(tails: list[list[int]], shared: int,
                  pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention mask over shared prefix and tail, positions) of right-padded tails."""
    import torch

    width = max(len(t) for t in tails)
    ids = torch.full((len(tails), width), pad, dtype=torch.long)
    mask = torch.zeros((len(tails), shared + width), dtype=torch.long)
    for i, tail in enumerate(tails):
        ids[i, :len(tail)] = torch.tensor(tail)
        mask[i, :shared + len(tail)] = 1
    return ids, mask, (shared + torch.arange(width)).expand(len(tails), width)


def _groups(tails: list[list[int]], shared: int = 0) -> list[list[list[int]]]:
    """Consecutive tails in groups of at most ``PASS_TOKENS`` padded tokens and, with the
    ``shared`` prefix each row holds a copy of, at most ``ROW_TOKENS`` (a longer tail alone),
    so that one forward pass, its logits and its keys and values stay bounded."""
    groups: list[list[list[int]]] = []
    for tail in tails:
        width = max(len(tail), *map(len, groups[-1])) if groups else len(tail)
        rows = len(groups[-1]) + 1 if groups else 1
        if groups and rows * width <= PASS_TOKENS and rows * (shared + width) <= ROW_TOKENS:
            groups[-1].append(tail)
        else:
            groups.append([tail])
    return groups


def common_prefix_length(rows: list[list[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    shortest = min(len(r) for r in rows)
    n = 0
    while n < shortest - 1 and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet (one printable character per byte), reversed."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]
    return dict(zip(chars, printable + others))


_BYTE_DECODER = _byte_decoder()


class _inference:
    """``torch.inference_mode()``, imported only when a request needs the model."""

    def __enter__(self) -> None:
        import torch
        self._mode = torch.inference_mode()
        self._mode.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)
