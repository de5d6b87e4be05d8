"""The model side of ``ldengine serve``: the served student, its schedule and budgets,
and the OpenAI-compatible requests it answers (as plain dicts; HTTP is ``serve.py``).

Endpoints (the subset of the OpenAI API that clients of a small local model use):

- ``GET /v1/models`` and ``GET /v1/models/ID``: the one served model; besides the
  OpenAI fields it carries ``model_hash``, ``adapter_hash`` and ``dtype`` so a
  client can check which weights answer (the ``openai`` student backend does).
- ``POST /v1/chat/completions``: the messages in the student's chat template,
  greedy generation (``max_tokens``, ``stop``); ``logprobs`` with ``top_logprobs``
  gives ``choices[0].logprobs.content[i] = {token, logprob, bytes, top_logprobs}``.
- ``POST /v1/completions``: a raw prompt (or a list of prompts), read exactly as
  given, no template; a list is run in one batched pass over its common token
  prefix. ``max_tokens: 1`` with ``logprobs: N`` gives the next token's top-N
  log-probabilities; ``echo: true`` with ``max_tokens: 0`` and ``logprobs: 0``
  gives the log-probability of each prompt token, which is how the ``openai``
  backend scores a candidate: the text ending in `` Yes`` and the one ending in
  `` No``; their difference is the logit difference the in-process student
  uses (the normaliser cancels), whatever the two tokens' ranks. (The top-20
  alone is not enough: after the fine-tuned adapter `` No`` is often not in it.)

Generation is always greedy (``temperature`` and ``top_p`` are accepted and
ignored), since selection and the engine's answers are greedy.

One model, many requests (``Turns``): a request runs as a series of forward
passes (a prompt chunk, a group of prompt tails, one written token), and the
requests admitted take turns on the model one pass at a time, in arrival order.
A 1-token request that arrives while a long one runs waits for one of its
passes, not for all of it. Each request has a budget (``Limits``): the tokens
the model reads and writes for it, refused up front (400) when its size says it
would exceed them, and a wall-clock time, after which it is stopped (503).
Requests beyond ``Limits.requests`` get 429, and one that waits longer than
``Limits.queue_s`` for its first pass gets 503; both with ``Retry-After``.
"""
from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from ldengine.errors import LDEngineError
from ldengine.models.student import pad_token_id

MAX_BODY_BYTES = 1 << 20     # 1 MiB: far above any selection or chat request of this engine
MAX_TOP_LOGPROBS = 20        # the OpenAI API's own limit
MAX_PROMPTS = 64             # prompts in one /v1/completions request (a top-K is at most 26)
MAX_REQUEST_TOKENS = 65536   # their tokens together, each counted in full (a top-26 selection with echo: about 21k)
MAX_MESSAGES = 256
MAX_STOPS = 4                # as in the OpenAI API
PASS_TOKENS = 256            # tokens (padded) in one forward pass, i.e. one turn on the model: a long
                             # prompt runs in chunks of this many, prompt tails in groups of at most this
                             # many (on 2 CPU cores about 0.5 s a pass; 1,024 made a 1-token request wait 8 s)
DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the model, and how long requests may wait for it.

    The defaults fit the engine's own use with room to spare (on a 2-core CPU, about
    2 ms per token read and 60 ms per token written): a top-26 selection scored with
    echo reads under 4,000 tokens (a list's common beginning counted once) and writes
    none; writing an emergency function reads about 1,000 and writes at most 160 (the
    engine's chat answers, at most 256).
    """
    read_tokens: int = 8192      # tokens the model reads for one request (= SmolLM2's context)
    written_tokens: int = 512    # tokens it writes, max_tokens x prompts
    request_s: float = 60.0      # wall-clock from admission to answer, waits for turns included
    queue_s: float = 10.0        # the longest wait for a request's first turn on the model
    requests: int = 8            # requests admitted at once; more get 429
    body_s: float = 5.0          # the whole request body must arrive within this (else 408)


class RequestError(LDEngineError):
    """A request the server refuses; ``status`` is its HTTP status (4xx, or 503 when
    the model is too busy), ``retry_after`` the seconds a client should wait, if any."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


# ---- the schedule -------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    deadline: float          # time.monotonic() by which it must be answered
    started: bool = False    # has it had its first turn?


class Turns:
    """Requests take turns on the one model, one forward pass at a time, first come first
    served (a FIFO hand-over, not ``threading.Lock``, which lets the releasing thread
    take it straight back). A request is admitted on its thread with ``request()``;
    each of its passes runs inside ``step()``."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._cond = threading.Condition()
        self._waiting: deque = deque()    # tokens of the steps waiting for the model, in order
        self._busy = False
        self._jobs: set[_Job] = set()     # admitted requests
        self._local = threading.local()

    @property
    def active(self) -> int:
        """Requests admitted now."""
        with self._cond:
            return len(self._jobs)

    @contextmanager
    def request(self) -> Iterator[None]:
        """Admit one request on this thread (429 when ``limits.requests`` are in);
        its wall-clock budget starts now."""
        with self._cond:
            if len(self._jobs) >= self.limits.requests:
                raise RequestError(f"the server is busy with {len(self._jobs)} requests; retry later",
                                   status=429, kind="rate_limit_error", code="too_many_requests",
                                   retry_after=self._retry_after())
            job = _Job(time.monotonic() + self.limits.request_s)
            self._jobs.add(job)
        self._local.job = job
        try:
            yield
        finally:
            self._local.job = None
            with self._cond:
                self._jobs.discard(job)

    @contextmanager
    def step(self) -> Iterator[None]:
        """Hold the model for one forward pass of this thread's request, after the passes
        asked for before it (503 when its first turn or its budget runs out first)."""
        job = getattr(self._local, "job", None)
        if job is None:
            raise RuntimeError("Turns.step() outside Turns.request()")
        now = time.monotonic()
        until = job.deadline if job.started else min(job.deadline, now + self.limits.queue_s)
        if now >= job.deadline or not self._acquire(until):
            raise self._late(job)
        job.started = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _acquire(self, until: float) -> bool:
        me = object()
        with self._cond:
            self._waiting.append(me)
            granted = self._cond.wait_for(lambda: not self._busy and self._waiting[0] is me,
                                          until - time.monotonic())
            self._waiting.remove(me)
            self._busy = self._busy or granted
            self._cond.notify_all()    # the head of the line may have changed
            return granted

    def _late(self, job: _Job) -> RequestError:
        if time.monotonic() >= job.deadline:
            return RequestError(f"the request ran past its time budget of {self.limits.request_s:g} s "
                                "(ldengine serve --request-timeout); send a smaller one",
                                status=503, kind="server_error", code="request_timeout")
        with self._cond:
            wait = self._retry_after()
        return RequestError(f"the model was busy for {self.limits.queue_s:g} s; retry later", status=503,
                            kind="server_error", code="queue_timeout", retry_after=wait)

    def _retry_after(self) -> int:
        """Seconds by which one of the admitted requests will have ended, at the latest
        (their deadlines); at least 1. Call it holding ``_cond``."""
        now = time.monotonic()
        return max(1, math.ceil(min((j.deadline for j in self._jobs), default=now) - now))


# ---- the model side ---------------------------------------------------------------


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

    def __init__(self, student: Any, name: str, limits: Limits | None = None):
        self.student, self.name = student, name
        self.created = int(time.time())
        self.turns = Turns(limits or Limits())
        self._usage_lock = threading.Lock()
        self.context_length = int(getattr(student.model.config, "max_position_embeddings", 2048))
        self.eos_ids = _eos_ids(student)

    def info(self) -> dict:
        """The model object of ``/v1/models``, with the weights' identity."""
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "ldengine",
                "model_hash": self.student.model_hash, "adapter_hash": self.student.adapter_hash,
                "dtype": getattr(self.student, "dtype", "float32"),
                "selection_layout": getattr(self.student, "layout", "joint"), "selections": SELECTIONS_PATH}

    def chat_ids(self, messages: list[dict]) -> list[int]:
        """The prompt's tokens: the messages in the chat template, ready for the answer."""
        tokenizer = self.student.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            return tokenizer(text, add_special_tokens=True)["input_ids"]
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # the template's own checks (roles, order) judge the user's messages
            raise RequestError(f"the chat template refused the messages: {str(exc)[:200]}",
                               param="messages") from None
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def text_ids(self, prompt: str) -> list[int]:
        """A raw prompt's tokens, encoded as the student encodes its selection text."""
        return self.student.tokenizer(prompt, add_special_tokens=True)["input_ids"]

    def check_budget(self, read: int, written: int) -> None:
        """Refuse up front a request that would need more tokens than one request may have."""
        limits = self.turns.limits
        if read > limits.read_tokens or written > limits.written_tokens:
            raise RequestError(
                f"over the request budget: the model would read {read} tokens and write up to {written}; "
                f"one request may read at most {limits.read_tokens} and write at most {limits.written_tokens} "
                "(a list's common beginning is read once; max_tokens counts once per prompt); "
                "split the request", code="request_budget_exceeded")

    @contextmanager
    def serving(self) -> Iterator[None]:
        """One admitted request on this thread, its passes taking turns (see ``Turns``)."""
        with self.turns.request(), _inference():
            yield

    def check_length(self, ids: list[int], max_tokens: int) -> None:
        if not ids:
            raise RequestError("the prompt is empty", param="prompt")
        if len(ids) + max_tokens > self.context_length:
            raise RequestError(f"the prompt ({len(ids)} tokens) plus max_tokens ({max_tokens}) exceeds "
                               f"the model's context of {self.context_length} tokens",
                               code="context_length_exceeded")

    def generate(self, ids: list[int], max_tokens: int, stops: list[str], top_n: int) -> Completion:
        """Greedy decoding with a key/value cache, stopping at end of sequence, a stop
        string (cut from the text, as the OpenAI API does) or ``max_tokens``."""
        tokens, finish = self._decode(ids, max_tokens, stops, top_n)
        self._count(1, len(ids) + len(tokens))
        return self.finish(tokens, stops, finish, len(ids))

    def finish(self, tokens: list[Token], stops: list[str], reason: str, prompt_tokens: int) -> Completion:
        """The answer's text (decoded whole, so characters split over tokens come out
        right), cut before the first stop string with the tokens that begin before it."""
        decode = self.student.tokenizer.decode
        text = decode([t.id for t in tokens])
        cuts = [text.find(s) for s in stops if s in text]
        if not cuts:
            return Completion(text, tokens, reason, prompt_tokens)
        cut = min(cuts)
        kept = [t for i, t in enumerate(tokens) if len(decode([u.id for u in tokens[:i]])) < cut]
        return Completion(text[:cut], kept, "stop", prompt_tokens)

    def _decode(self, ids: list[int], max_tokens: int, stops: list[str], top_n: int) -> tuple[list[Token], str]:
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
                token = self._token(logits, top_n)
            if token.id in self.eos_ids:
                return tokens, "stop"
            tokens.append(token)
            if stops and any(s in self.student.tokenizer.decode([t.id for t in tokens]) for s in stops):
                return tokens, "stop"
            if len(tokens) == max_tokens:
                return tokens, "length"

    def next_tokens(self, rows: list[list[int]], top_n: int) -> list[Token]:
        """The greedy next token of each prompt with its top-``top_n`` log-probabilities.

        The prompts' common token prefix runs once and its keys and values serve
        every row (right-padded, each token at its own position), as the
        in-process student scores its K candidates over one shared context.
        """
        shared = _common_prefix_length(rows)
        tails = [r[shared:] for r in rows]
        layers = _layers(self._passes(rows[0][:shared], 0, score=False)[0])
        tokens = []
        for group in _groups(tails):
            if len(group[0]) > PASS_TOKENS:      # a long tail runs alone, in passes over the prefix
                tokens.append(self._token(self._passes(group[0], 0, False, layers, shared)[2], top_n))
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
        shared = _common_prefix_length(rows)
        tails = [r[shared:] for r in rows]
        cache, head, last = self._passes(rows[0][:shared], top_n, score=True)
        layers, scored = _layers(cache), []
        head = [(None, None)] + head if shared else []
        for group in _groups(tails):
            firsts = [self._scored(last.unsqueeze(0), t[:1], top_n) if shared else [(None, None)] for t in group]
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

    def _passes(self, ids: list[int], top_n: int, score: bool, layers: Any = None,
                offset: int = 0) -> tuple[Any, list[tuple], Any]:
        """Run ``ids`` in chunks of ``PASS_TOKENS``, one turn each, after the ``offset``
        tokens whose keys and values are ``layers`` (none: from the start): (the key/value
        cache, the scores of ``ids[1:]`` when ``score``, the logits after the last token)."""
        import torch
        from ldengine.models.kv import expanded_cache

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

    def _tails(self, layers: Any, shared: int, tails: list[list[int]], last_only: bool) -> Any:
        """The logits of right-padded ``tails`` run over the prefix's keys and values:
        [rows, vocab] after each tail's last token, or [rows, width, vocab]."""
        import torch
        from ldengine.models.kv import expanded_cache

        model, device = self.student.model, self.student.device
        ids, mask, positions = _right_padded(tails, shared, pad_token_id(self.student.tokenizer))
        last = torch.tensor([len(t) - 1 for t in tails], device=device)
        keep = torch.unique(last) if last_only else 0
        cache = expanded_cache(layers, len(tails), model.config) if layers else None
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    cache=cache, use_cache=True, logits_to_keep=keep)
        if not last_only:
            return out.logits
        return out.logits[torch.arange(len(tails), device=device), torch.searchsorted(keep, last)]

    def _scored(self, logits: Any, targets: list[int], top_n: int) -> list[tuple]:
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

    def _token(self, logits: Any, top_n: int) -> Token:
        """The argmax token of one position, with log-softmax values (float64)."""
        logprobs = logits.double().log_softmax(-1)
        best = int(logprobs.argmax())
        top = []
        if top_n:
            values, ids = logprobs.topk(top_n)
            top = [(int(i), self._text(int(i)), float(v)) for v, i in zip(values, ids)]
        return Token(best, self._text(best), float(logprobs[best]), top)

    def _text(self, token_id: int) -> str:
        return self.student.tokenizer.decode([token_id])

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


def _layers(cache: Any) -> Any:
    """A prefix cache's (keys, values) per layer, or None for no prefix."""
    from ldengine.models.kv import cache_layers

    return cache_layers(cache) if cache is not None else None


def _eos_ids(student: Any) -> set[int]:
    """Every id that ends an answer: the tokenizer's and the generation config's."""
    ids = {student.tokenizer.eos_token_id}
    configured = getattr(getattr(student.model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


def _right_padded(tails: list[list[int]], shared: int, pad: int) -> tuple[Any, Any, Any]:
    """(ids, attention mask over shared prefix and tail, positions) of right-padded tails."""
    import torch

    width = max(len(t) for t in tails)
    ids = torch.full((len(tails), width), pad, dtype=torch.long)
    mask = torch.zeros((len(tails), shared + width), dtype=torch.long)
    for i, tail in enumerate(tails):
        ids[i, :len(tail)] = torch.tensor(tail)
        mask[i, :shared + len(tail)] = 1
    return ids, mask, (shared + torch.arange(width)).expand(len(tails), width)


def _groups(tails: list[list[int]]) -> list[list[list[int]]]:
    """Consecutive tails in groups of at most ``PASS_TOKENS`` padded tokens (a longer
    tail alone), so that one forward pass, and its logits, stay bounded."""
    groups: list[list[list[int]]] = []
    for tail in tails:
        if groups and (len(groups[-1]) + 1) * max(len(tail), *map(len, groups[-1])) <= PASS_TOKENS:
            groups[-1].append(tail)
        else:
            groups.append([tail])
    return groups


def _common_prefix_length(rows: list[list[int]]) -> int:
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

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)


# ---- requests ---------------------------------------------------------------------


def parse_body(raw: bytes) -> dict:
    """The request's JSON object. Refuses bytes that are not UTF-8 and text holding a lone
    surrogate (JSON's ``"\\ud800"`` escape decodes to one; no tokenizer can encode it)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the request body is not UTF-8: {exc}") from None
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RequestError(f"the request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    _check_text(body)
    return body


def _check_text(body: dict) -> None:
    """Every string of ``body`` (keys too) is Unicode text that encodes to UTF-8."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:        # not recursive: the JSON may be nested almost to the recursion limit
        where, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{where}.{k}", k) for k in value] + [(f"{where}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{where}[{i}]", v) for i, v in enumerate(value) if isinstance(v, (str, list, dict))]
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                where = where.lstrip(".").encode("utf-8", "backslashreplace").decode() or "the body"
                raise RequestError(f"{where} is not Unicode text: a lone surrogate "
                                   f"{value[exc.start]!r} at character {exc.start}", param=where) from None


def _get(body: dict, name: str, types: type | tuple, default: Any = None, required: bool = False) -> Any:
    """A field of the request, checked for type (``bool`` is not accepted as a number)."""
    if name not in body or body[name] is None:
        if required:
            raise RequestError(f"missing required field {name!r}", param=name)
        return default
    value = body[name]
    numeric = types in (int, float) or (isinstance(types, tuple) and int in types)
    if not isinstance(value, types) or (numeric and isinstance(value, bool)):
        raise RequestError(f"field {name!r} has the wrong type ({type(value).__name__})", param=name)
    return value


def _ranged(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = _get(body, name, int, default)
    if not low <= value <= high:
        raise RequestError(f"field {name!r} must be between {low} and {high}, got {value}", param=name)
    return value


def _stops(body: dict) -> list[str]:
    stop = _get(body, "stop", (str, list), [])
    stops = [stop] if isinstance(stop, str) else stop
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(f"'stop' must be a non-empty string or a list of at most {MAX_STOPS} of them",
                           param="stop")
    return stops


def _common_options(body: dict, model: ServedModel) -> None:
    """The fields every generation request shares: the model, one answer, no streaming."""
    asked = _get(body, "model", str, required=True)
    if asked != model.name:
        raise RequestError(f"the model {asked!r} does not exist here; this server serves {model.name!r}",
                           status=404, param="model", code="model_not_found")
    if _get(body, "stream", bool, False):
        raise RequestError("streaming is not supported by ldengine serve", param="stream")
    _ranged(body, "n", 1, 1, 1)
    for name in ("temperature", "top_p"):
        _get(body, name, (int, float))


def _messages(body: dict) -> list[dict]:
    messages = _get(body, "messages", list, required=True)
    if not messages or len(messages) > MAX_MESSAGES:
        raise RequestError(f"'messages' must hold 1 to {MAX_MESSAGES} messages", param="messages")
    return [_message(m, i) for i, m in enumerate(messages)]


def _message(message: Any, index: int) -> dict:
    """One message as ``{role, content}`` text (content parts of type text are joined)."""
    where = f"messages[{index}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise RequestError(f"{where} must be an object with a string 'role'", param=where)
    content = message.get("content")
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise RequestError(f"{where}: only text content parts are supported", param=where)
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise RequestError(f"{where} needs a string 'content'", param=where)
    return {"role": message["role"], "content": content}


def _prompts(body: dict) -> list[str]:
    prompt = _get(body, "prompt", (str, list), required=True)
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not prompts or len(prompts) > MAX_PROMPTS or not all(isinstance(p, str) for p in prompts):
        raise RequestError(f"'prompt' must be a string or a list of 1 to {MAX_PROMPTS} strings "
                           "(token-id prompts are not supported)", param="prompt")
    return prompts


def _max_tokens(body: dict, model: ServedModel, low: int = 1) -> int:
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return _ranged(body, key, DEFAULT_MAX_TOKENS, low, model.context_length)


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _envelope(kind: str, model: ServedModel, choices: list[dict], prompt: int, completion: int) -> dict:
    prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
            "model": model.name, "system_fingerprint": _fingerprint(model), "choices": choices,
            "usage": _usage(prompt, completion)}


def _fingerprint(model: ServedModel) -> str:
    """Names the weights that answered (base and adapter), as OpenAI's fingerprint names a backend."""
    adapter = model.student.adapter_hash
    return f"ldengine-{model.student.model_hash[:12]}-{adapter[:12] if adapter else 'base'}"


def chat_completion(body: dict, model: ServedModel) -> dict:
    """``POST /v1/chat/completions``."""
    _common_options(body, model)
    messages, stops, max_tokens = _messages(body), _stops(body), _max_tokens(body, model)
    want_logprobs = _get(body, "logprobs", bool, False)
    top_n = _ranged(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
    if top_n and not want_logprobs:
        raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    ids = model.chat_ids(messages)
    model.check_length(ids, max_tokens)
    model.check_budget(len(ids), max_tokens)
    with model.serving():
        done = model.generate(ids, max_tokens, stops, top_n)
    choice = {"index": 0, "message": {"role": "assistant", "content": done.text},
              "logprobs": {"content": [_chat_logprob(t, model) for t in done.tokens]} if want_logprobs else None,
              "finish_reason": done.finish_reason}
    return _envelope("chat.completion", model, [choice], len(ids), len(done.tokens))


def _chat_logprob(token: Token, model: ServedModel) -> dict:
    alternatives = [Token(i, text, lp) for i, text, lp in token.top or []]
    return {"token": token.text, "logprob": token.logprob, "bytes": model.token_bytes(token),
            "top_logprobs": [{"token": t.text, "logprob": t.logprob, "bytes": model.token_bytes(t)}
                             for t in alternatives]}


def completion(body: dict, model: ServedModel) -> dict:
    """``POST /v1/completions``: raw prompts, read as given. ``max_tokens: 1`` runs all
    prompts in one pass; ``echo`` returns each prompt's own tokens first, with their
    log-probabilities when ``logprobs`` is set (``max_tokens: 0`` then only scores)."""
    _common_options(body, model)
    echo = _get(body, "echo", bool, False)
    prompts, stops, max_tokens = _prompts(body), _stops(body), _max_tokens(body, model, 0 if echo else 1)
    top_n = _ranged(body, "logprobs", 0, 0, MAX_TOP_LOGPROBS) if body.get("logprobs") is not None else None
    rows = [model.text_ids(p) for p in prompts]
    for ids in rows:
        model.check_length(ids, max_tokens)
    if sum(len(r) for r in rows) > MAX_REQUEST_TOKENS:
        raise RequestError(f"the prompts hold {sum(len(r) for r in rows)} tokens; one request may hold "
                           f"at most {MAX_REQUEST_TOKENS}", param="prompt")
    model.check_budget(*_cost(rows, max_tokens, scored=echo and top_n is not None))
    with model.serving():
        done = _written(model, rows, max_tokens, stops, top_n or 0)
        echoed = _echoed(model, rows, prompts, top_n) if echo else [([], "")] * len(rows)
    choices = [{"index": i, "text": text + d.text, "finish_reason": d.finish_reason,
                "logprobs": _legacy_logprobs(tokens + d.tokens) if top_n is not None else None}
               for i, ((tokens, text), d) in enumerate(zip(echoed, done))]
    return _envelope("text_completion", model, choices, sum(len(r) for r in rows),
                     sum(len(d.tokens) for d in done))


def _cost(rows: list[list[int]], max_tokens: int, scored: bool) -> tuple[int, int]:
    """(tokens the model reads, tokens it may write) for a completions request, as it runs:
    a batched pass (echo scores, the next token) reads the prompts' common beginning once,
    writing more than one token reads each prompt in full."""
    shared = _common_prefix_length(rows)
    batched = shared + sum(len(r) - shared for r in rows)
    read = (batched if scored else 0) + (batched if max_tokens == 1 else 0)
    read += sum(len(r) for r in rows) if max_tokens > 1 else 0
    return read, max_tokens * len(rows)


def _written(model: ServedModel, rows: list[list[int]], max_tokens: int, stops: list[str],
             top_n: int) -> list[Completion]:
    """What the model writes after each prompt (nothing for ``max_tokens`` 0)."""
    if max_tokens == 0:
        return [Completion("", [], "length", len(r)) for r in rows]
    if max_tokens == 1:
        return [_one_token(t, model, stops, len(r)) for t, r in zip(model.next_tokens(rows, top_n), rows)]
    return [model.generate(ids, max_tokens, stops, top_n) for ids in rows]


def _echoed(model: ServedModel, rows: list[list[int]], prompts: list[str],
            top_n: int | None) -> list[tuple[list[Token], str]]:
    """(the prompt's tokens, with log-probabilities when asked; the prompt's text) per prompt."""
    if top_n is None:
        return [([], p) for p in prompts]
    return list(zip(model.prompt_tokens(rows, top_n), prompts))


def _one_token(token: Token, model: ServedModel, stops: list[str], prompt_tokens: int) -> Completion:
    if token.id in model.eos_ids:
        return Completion("", [], "stop", prompt_tokens)
    return model.finish([token], stops, "length", prompt_tokens)


def _legacy_logprobs(tokens: list[Token]) -> dict:
    """The completions API's logprobs: parallel lists, top alternatives as {token: logprob}
    (two tokens that read the same keep the likelier one)."""
    offsets, offset = [], 0
    for token in tokens:
        offsets.append(offset)
        offset += len(token.text)
    tops = [None if t.top is None else {text: lp for _, text, lp in reversed(t.top)} for t in tokens]
    return {"tokens": [t.text for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": tops, "text_offset": offsets}


# ---- selections (an ldengine extension of the API) ---------------------------------------------

SELECTIONS_PATH = "/v1/ldengine/selections"
MAX_SELECTIONS = 64          # selections in one request (games in lockstep send one per game)


def selections(body: dict, model: ServedModel) -> dict:
    """``POST /v1/ldengine/selections``: the student's own selection, computed here exactly as
    in-process (``select_batch``), for clients whose adapter reads selections in a layout
    that text prompts cannot express (the ``rows`` layout: each candidate read apart, then
    the query once). Body: ``{"model", "items": [{"prefix", "query", "options"}]}``; answer:
    ``{"object": "ldengine.selections", "data": [{"index", "probabilities"}], "usage"}``."""
    from ldengine.models.base import MAX_OPTIONS
    _common_options(body, model)
    items = _get(body, "items", list, required=True)
    if not items or len(items) > MAX_SELECTIONS:
        raise RequestError(f"items must hold 1 to {MAX_SELECTIONS} selections", param="items")
    parsed = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestError(f"items[{i}] must be an object", param="items")
        prefix, query = _get(item, "prefix", str, ""), _get(item, "query", str, required=True)
        options = _get(item, "options", list, required=True)
        if not options or len(options) > MAX_OPTIONS or not all(isinstance(o, str) for o in options):
            raise RequestError(f"items[{i}].options must be 1 to {MAX_OPTIONS} strings", param="items")
        parsed.append((prefix, query, list(options)))
    student = model.student
    read = sum(len(model.text_ids(q)) + sum(len(model.text_ids(o)) for o in opts) for _, q, opts in parsed)
    model.check_budget(read, 0)
    before = dict(student.usage)
    with model.serving(), model.turns.step():
        chosen = student.select_batch(parsed)
    tokens = int(student.usage.get("tokens", 0) - before.get("tokens", 0))
    return {"object": "ldengine.selections", "model": model.name, "selection_layout": student.layout,
            "data": [{"index": c.index, "probabilities": c.probabilities} for c in chosen],
            "usage": _usage(tokens, 0)}
