"""``ldengine serve``: the local student behind an OpenAI-compatible HTTP API.

Standard library only (``http.server``, ``json``): serving one small model to a
few local clients needs no web framework, and the engine gains no dependency.

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
ignored), since selection and the engine's answers are greedy. One model, one
lock: requests are served by threads but reach the model one at a time. A bad
request gets a 4xx JSON error ``{"error": {"message", "type", ...}}``; an
unexpected failure a 500 with a one-line message (the traceback goes to the log,
never to the client). There is no authentication: it binds 127.0.0.1 by default.
"""
from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click

from ldengine.errors import LDEngineError
from ldengine.models.student import pad_token_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20     # 1 MiB: far above any selection or chat request of this engine
MAX_TOP_LOGPROBS = 20        # the OpenAI API's own limit
MAX_PROMPTS = 64             # prompts in one /v1/completions request (a top-K is at most 26)
MAX_REQUEST_TOKENS = 65536   # their tokens together (a top-26 selection scored with echo: about 16k)
MAX_MESSAGES = 256
MAX_STOPS = 4                # as in the OpenAI API
CHUNK_TOKENS = 512           # a long prompt runs in chunks: at most this many tokens' logits at once
TAIL_TOKENS = 1024           # padded tokens of prompt tails run together in one pass
DEFAULT_MAX_TOKENS = 256
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class RequestError(LDEngineError):
    """A request the server refuses; ``status`` is its HTTP status (4xx)."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


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
    """The student behind the lock, with the model-level operations the API needs.

    Uses the ``TransformersStudent``'s model and tokenizer directly: the API
    needs per-token log-probabilities and arbitrary chat messages, which the
    student's own ``generate`` does not expose.
    """

    def __init__(self, student: Any, name: str):
        self.student, self.name = student, name
        self.created = int(time.time())
        self.lock = threading.Lock()
        self.context_length = int(getattr(student.model.config, "max_position_embeddings", 2048))
        self.eos_ids = _eos_ids(student)

    def info(self) -> dict:
        """The model object of ``/v1/models``, with the weights' identity."""
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "ldengine",
                "model_hash": self.student.model_hash, "adapter_hash": self.student.adapter_hash,
                "dtype": getattr(self.student, "dtype", "float32")}

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
        with self.lock, _inference():
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
        import torch

        model, device = self.student.model, self.student.device
        out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1)
        tokens: list[Token] = []
        for _ in range(max_tokens):
            token = self._token(out.logits[0, -1], top_n)
            if token.id in self.eos_ids:
                return tokens, "stop"
            tokens.append(token)
            if stops and any(s in self.student.tokenizer.decode([t.id for t in tokens]) for s in stops):
                return tokens, "stop"
            out = model(input_ids=torch.tensor([[token.id]], device=device),
                        cache=out.cache, use_cache=True)
        return tokens, "length"

    def next_tokens(self, rows: list[list[int]], top_n: int) -> list[Token]:
        """The greedy next token of each prompt with its top-``top_n`` log-probabilities.

        The prompts' common token prefix runs once and its keys and values serve
        every row (right-padded, each token at its own position), as the
        in-process student scores its K candidates over one shared context.
        """
        shared = _common_prefix_length(rows)
        tails = [r[shared:] for r in rows]
        with self.lock, _inference():
            layers, _, _ = self._prefix(rows[0][:shared], 0, score=False)
            tokens = [self._token(logits, top_n) for group in _groups(tails)
                      for logits in self._tails(layers, shared, group, last_only=True)]
            self._count(len(rows), shared + sum(len(t) for t in tails))
        return tokens

    def prompt_tokens(self, rows: list[list[int]], top_n: int) -> list[list[Token]]:
        """Each prompt's own tokens with their log-probabilities given what precedes them
        (``echo``): how a client scores a given continuation exactly, whatever its rank.
        The first token has none (nothing precedes it). The common prefix is scored
        once, in chunks, so no request holds more than a few chunks' logits at a time."""
        shared = _common_prefix_length(rows)
        tails = [r[shared:] for r in rows]
        if any(len(t) > TAIL_TOKENS for t in tails):
            raise RequestError(f"echo with logprobs scores at most {TAIL_TOKENS} tokens per prompt beyond "
                               "the prompts' common beginning; send such prompts one per request")
        with self.lock, _inference():
            layers, head, last = self._prefix(rows[0][:shared], top_n, score=True)
            scored = []
            for group in _groups(tails):
                for tail, logits in zip(group, self._tails(layers, shared, group, last_only=False)):
                    first = self._scored(last.unsqueeze(0), tail[:1], top_n) if last is not None else [(None, None)]
                    scored.append(head + first + self._scored(logits[:len(tail) - 1], tail[1:], top_n))
            self._count(len(rows), shared + sum(len(t) for t in tails))
        return [self._tokens(row, values) for row, values in zip(rows, scored)]

    def _tokens(self, row: list[int], scored: list[tuple]) -> list[Token]:
        texts = self.student.tokenizer.batch_decode([[i] for i in row])
        return [Token(i, text, lp, top) for i, text, (lp, top) in zip(row, texts, scored)]

    def _prefix(self, ids: list[int], top_n: int, score: bool) -> tuple[Any, list[tuple], Any]:
        """Run the shared prefix in chunks: (its keys and values, the scores of its tokens
        when ``score`` (the first has none), the logits after its last token)."""
        import torch
        from ldengine.models.kv import cache_layers

        if not ids:
            return None, [], None
        model, device = self.student.model, self.student.device
        cache, scored, last = None, [(None, None)], None
        for start in range(0, len(ids), CHUNK_TOKENS):
            chunk = ids[start:start + CHUNK_TOKENS]
            out = model(input_ids=torch.tensor([chunk], device=device), use_cache=True, cache=cache,
                        position_ids=torch.arange(start, start + len(chunk), device=device).unsqueeze(0),
                        logits_to_keep=0 if score else 1)
            cache, logits = out.cache, out.logits[0]
            if score:
                targets = ids[start + 1:start + len(chunk) + 1]
                scored += self._scored(logits[:len(targets)], targets, top_n)
            last = logits[-1]
        return cache_layers(cache), scored, last

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
        self.student.usage["model_calls"] += calls
        self.student.usage["tokens"] += tokens


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
    """Consecutive tails in groups of at most ``TAIL_TOKENS`` padded tokens (one long
    tail alone), so that one forward pass's logits stay bounded."""
    groups: list[list[list[int]]] = []
    for tail in tails:
        if groups and (len(groups[-1]) + 1) * max(len(tail), *map(len, groups[-1])) <= TAIL_TOKENS:
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
    done = _written(model, rows, max_tokens, stops, top_n or 0)
    echoed = _echoed(model, rows, prompts, top_n) if echo else [([], "")] * len(rows)
    choices = [{"index": i, "text": text + d.text, "finish_reason": d.finish_reason,
                "logprobs": _legacy_logprobs(tokens + d.tokens) if top_n is not None else None}
               for i, ((tokens, text), d) in enumerate(zip(echoed, done))]
    return _envelope("text_completion", model, choices, sum(len(r) for r in rows),
                     sum(len(d.tokens) for d in done))


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


# ---- HTTP ---------------------------------------------------------------------


class StudentServer(ThreadingHTTPServer):
    """A threading HTTP server that holds the served model."""
    daemon_threads = True      # a hung client never keeps the process alive

    def __init__(self, address: tuple[str, int], model: ServedModel):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.model = model
        self._open: set = set()    # connections being served (a keep-alive one waits for its next request)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self._open.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Also ends the open connections, so no handler thread outlives the server (one
        left waiting on a keep-alive socket at interpreter exit can abort the process)."""
        super().server_close()
        for request in list(self._open):
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that broke (a client gone mid-answer) is one log line, not a traceback."""
        log.warning("connection from %s failed: %s", client_address[0], sys.exc_info()[1])

    @property
    def url(self) -> str:
        """The API's base URL (``.../v1``), with the port actually bound."""
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/v1"


class Handler(BaseHTTPRequestHandler):
    """Routes requests; every answer is JSON, every refusal a 4xx JSON error."""
    protocol_version = "HTTP/1.1"   # keep-alive, as OpenAI clients expect
    server_version = "ldengine-serve"
    timeout = 120                   # an idle or stalled connection is dropped, not kept forever
    server: StudentServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(self._get_route)

    def do_POST(self) -> None:  # noqa: N802
        self._body_read = False   # a body refused unread ends the connection (see _send)
        self._answer(self._post_route)

    def _get_route(self) -> dict:
        model, path = self.server.model, self._path()
        if path == "/v1/models":
            return {"object": "list", "data": [model.info()]}
        if path == f"/v1/models/{model.name}":
            return model.info()
        if path.startswith("/v1/models/"):
            raise RequestError(f"the model {path[len('/v1/models/'):]!r} does not exist here", status=404,
                               code="model_not_found")
        raise self._no_route({"/v1/chat/completions", "/v1/completions"})

    def _post_route(self) -> dict:
        routes = {"/v1/chat/completions": chat_completion, "/v1/completions": completion}
        handler = routes.get(self._path())
        if handler is None:
            raise self._no_route({"/v1/models"})
        return handler(self._json_body(), self.server.model)

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def _no_route(self, other_method: set[str]) -> RequestError:
        path = self._path()
        if path in other_method or path.startswith("/v1/models/"):
            return RequestError(f"{self.command} is not allowed on {path}", status=405)
        return RequestError(f"no such endpoint: {self.command} {path}", status=404)

    def _json_body(self) -> dict:
        """The request's JSON object, refusing a body that is missing, too large or not JSON."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise RequestError("chunked request bodies are not supported; send Content-Length", status=411)
        length = _content_length(self.headers.get("Content-Length"))
        if length > MAX_BODY_BYTES:
            raise RequestError(f"request body of {length} bytes exceeds {MAX_BODY_BYTES} bytes", status=413)
        raw = self.rfile.read(length)
        self._body_read = len(raw) == length
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise RequestError(f"the request body is not valid JSON: {str(exc)[:200]}") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return body

    def _answer(self, route: Any) -> None:
        try:
            status, payload = 200, route()
        except RequestError as exc:
            status, payload = exc.status, exc.body()
        except Exception as exc:  # a failure is this request's, never the server's
            log.exception("request %s %s failed", self.command, self.path)
            status = 500
            payload = RequestError(f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
                                   kind="server_error").body()
        self._send(status, payload)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        if self.command == "POST" and not getattr(self, "_body_read", True):
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        log.info("%s %s", self.address_string(), format % args)


def _content_length(header: str | None) -> int:
    if header is None:
        raise RequestError("a request body with Content-Length is required", status=411)
    try:
        length = int(header)
    except ValueError:
        raise RequestError(f"bad Content-Length {header!r}") from None
    if length < 0:
        raise RequestError(f"bad Content-Length {header!r}")
    return length


def make_server(student: Any, host: str = "127.0.0.1", port: int = 8000,
                model_name: str | None = None) -> StudentServer:
    """A server for ``student`` bound to ``host:port`` (port 0: any free port); call
    ``serve_forever()`` on it (and ``shutdown()`` from another thread to stop)."""
    try:
        return StudentServer((host, port), ServedModel(student, model_name or student.name))
    except OSError as exc:
        raise LDEngineError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def default_model_name(student: Any, adapter: str | None) -> str:
    """The student's name, or the adapter folder's name when one is applied."""
    return Path(adapter).name if adapter else student.name


@click.command()
@click.option("--student", type=click.Path(exists=True),
              help="Student model: a .gguf file or a local HF model folder (default: SmolLM2-135M-Instruct).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False),
              help="LoRA adapter folder to apply (e.g. the pursuit LD adapter under function_base/pursuit/adapters/).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. There is no authentication: keep it on loopback unless the network is trusted.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--model-name", help="Model id clients ask for (default: the adapter folder's name, else the student's).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
              show_default=True, help="Type the student runs in.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the student runs. auto: the GPU when torch sees one, else the CPU.")
def serve_command(student: str | None, adapter: str | None, host: str, port: int, model_name: str | None,
                  dtype: str, device: str) -> None:
    """Serve the student over an OpenAI-compatible HTTP API.

    GET /v1/models, POST /v1/chat/completions and POST /v1/completions, greedy,
    with log-probabilities. The `openai` student backend plays against it:
    `ldengine run pursuit --backend openai` with LDENGINE_STUDENT_URL set to
    openai:http://HOST:PORT/v1#MODEL (or nothing: the default port here); serve
    the adapter the run uses (`--adapter`), or the backend refuses to play.
    """
    from ldengine.models import load_student

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ldengine.cli import _device
    loaded = load_student(path=student, adapter=adapter, dtype=None if dtype == "float32" else dtype,
                          device=_device(device))
    server = make_server(loaded, host, port, model_name or default_model_name(loaded, adapter))
    if host not in LOOPBACK:
        click.echo(f"warning: listening on {host} without authentication", err=True)
    click.echo(f"serving {server.model.name} at {server.url} (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
