"""What each endpoint answers, as plain dicts (HTTP is ``ldengine.serving.http``): the
subset of the OpenAI API that clients of a small local model use, and selections.

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
- ``POST /v1/ldengine/selections`` (an ldengine extension): the student's own
  selection, for adapters whose layout text prompts cannot express.

Generation is always greedy, since selection and the engine's answers are greedy: a
request asking for sampling (``temperature`` other than 0, ``top_p`` other than 1) is
refused with a 400 naming the field, never answered greedily in silence. Each request has a
budget (``Limits``): the tokens the model reads and writes for it, refused up front
(400) when its size says it would exceed them.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from ldengine.serving.limits import RequestError
from ldengine.serving.model import Completion, ServedModel, Token, common_prefix_length
from ldengine.serving.requests import (MAX_TOP_LOGPROBS, chat_messages, check_budget, check_length, check_prompt_tokens,
                                       common_options, get_field, max_tokens_asked, prompt_list, ranged_field,
                                       selection_items, stop_strings)

SELECTIONS_PATH = "/v1/ldengine/selections"


def model_info(model: ServedModel) -> dict:
    """The model object of ``/v1/models``, with the weights' identity."""
    student = model.student
    return {"id": model.name, "object": "model", "created": model.created, "owned_by": "ldengine",
            "model_hash": student.model_hash, "adapter_hash": student.adapter_hash,
            "dtype": getattr(student, "dtype", "float32"),
            "selection_layout": getattr(student, "layout", "joint"), "selections": SELECTIONS_PATH}


def usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def envelope(kind: str, model: ServedModel, choices: list[dict], prompt: int | None = None,
             completion: int = 0) -> dict:
    """An answer's outer fields; ``usage`` when ``prompt`` is given (a stream's chunks have none)."""
    prefix = "chatcmpl" if kind.startswith("chat.completion") else "cmpl"
    answer = {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
              "model": model.name, "system_fingerprint": _fingerprint(model), "choices": choices}
    if prompt is not None:
        answer["usage"] = usage(prompt, completion)
    return answer


def _fingerprint(model: ServedModel) -> str:
    """Names the weights that answered (base and adapter), as OpenAI's fingerprint names a backend."""
    adapter = model.student.adapter_hash
    return f"ldengine-{model.student.model_hash[:12]}-{adapter[:12] if adapter else 'base'}"


@dataclass
class Writing:
    """A request to write after one prompt, checked: its tokens, how much to write, where to
    stop, and which log-probabilities to give (``top_n`` alternatives; ``logprobs``: any)."""
    ids: list[int]
    max_tokens: int
    stops: list[str]
    top_n: int
    logprobs: bool


def chat_request(body: dict, model: ServedModel, streamed: bool = False) -> Writing:
    """A chat request's fields, checked against the model and its budget before any pass."""
    common_options(body, model, streamed)
    messages, stops, max_tokens = chat_messages(body), stop_strings(body), max_tokens_asked(body, model)
    want_logprobs = get_field(body, "logprobs", bool, False)
    top_n = ranged_field(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
    if top_n and not want_logprobs:
        raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    ids = model.chat_ids(messages)
    check_length(model, ids, max_tokens)
    check_budget(model, len(ids), max_tokens)
    return Writing(ids, max_tokens, stops, top_n, want_logprobs)


def chat_completion(body: dict, model: ServedModel) -> dict:
    """``POST /v1/chat/completions``."""
    asked = chat_request(body, model)
    with model.serving():
        done = model.generate(asked.ids, asked.max_tokens, asked.stops, asked.top_n)
    choice = {"index": 0, "message": {"role": "assistant", "content": done.text},
              "logprobs": chat_logprobs(done.tokens, model) if asked.logprobs else None,
              "finish_reason": done.finish_reason}
    return envelope("chat.completion", model, [choice], len(asked.ids), len(done.tokens))


def chat_logprobs(tokens: list[Token], model: ServedModel) -> dict:
    """The chat API's ``logprobs`` of ``tokens``."""
    return {"content": [_chat_logprob(t, model) for t in tokens]}


def _chat_logprob(token: Token, model: ServedModel) -> dict:
    alternatives = [Token(i, text, lp) for i, text, lp in token.top or []]
    return {"token": token.text, "logprob": token.logprob, "bytes": model.token_bytes(token),
            "top_logprobs": [{"token": t.text, "logprob": t.logprob, "bytes": model.token_bytes(t)}
                             for t in alternatives]}


def completion(body: dict, model: ServedModel) -> dict:
    """``POST /v1/completions``: raw prompts, read as given. ``max_tokens: 1`` runs all
    prompts in one pass; ``echo`` returns each prompt's own tokens first, with their
    log-probabilities when ``logprobs`` is set (``max_tokens: 0`` then only scores)."""
    common_options(body, model)
    echo = get_field(body, "echo", bool, False)
    prompts, stops = prompt_list(body), stop_strings(body)
    max_tokens = max_tokens_asked(body, model, 0 if echo else 1)
    top_n = ranged_field(body, "logprobs", 0, 0, MAX_TOP_LOGPROBS) if body.get("logprobs") is not None else None
    rows = [model.text_ids(p) for p in prompts]
    for ids in rows:
        check_length(model, ids, max_tokens)
    check_prompt_tokens(rows)
    check_budget(model, *_cost(rows, max_tokens, scored=echo and top_n is not None))
    with model.serving():
        done = _written(model, rows, max_tokens, stops, top_n or 0)
        echoed = _echoed(model, rows, prompts, top_n) if echo else [([], "")] * len(rows)
    choices = [{"index": i, "text": text + d.text, "finish_reason": d.finish_reason,
                "logprobs": legacy_logprobs(tokens + d.tokens) if top_n is not None else None}
               for i, ((tokens, text), d) in enumerate(zip(echoed, done))]
    return envelope("text_completion", model, choices, sum(len(r) for r in rows),
                     sum(len(d.tokens) for d in done))


def _cost(rows: list[list[int]], max_tokens: int, scored: bool) -> tuple[int, int]:
    """(tokens the model reads, tokens it may write) for a completions request, as it runs:
    a batched pass (echo scores, the next token) reads the prompts' common beginning once,
    writing more than one token reads each prompt in full."""
    shared = common_prefix_length(rows)
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


def legacy_logprobs(tokens: list[Token], offset: int = 0) -> dict:
    """The completions API's logprobs: parallel lists, top alternatives as {token: logprob}
    (two tokens that read the same keep the likelier one); the text begins at ``offset``."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token.text)
    tops = [None if t.top is None else {text: lp for _, text, lp in reversed(t.top)} for t in tokens]
    return {"tokens": [t.text for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": tops, "text_offset": offsets}


def selections(body: dict, model: ServedModel) -> dict:
    """``POST /v1/ldengine/selections``: the student's own selection, computed here exactly as
    in-process (``select_batch``), for clients whose adapter reads selections in a layout
    that text prompts cannot express (the ``rows`` layout: each candidate read apart, then
    the query once). Body: ``{"model", "items": [{"prefix", "query", "options"}]}``; answer:
    ``{"object": "ldengine.selections", "data": [{"index", "probabilities"}], "usage"}``."""
    common_options(body, model)
    parsed = selection_items(body)
    student = model.student
    read = sum(len(model.text_ids(q)) + sum(len(model.text_ids(o)) for o in opts) for _, q, opts in parsed)
    check_budget(model, read, 0)
    before = dict(student.usage)
    with model.serving(), model.turns.step():
        chosen = student.select_batch(parsed)
    tokens = int(student.usage.get("tokens", 0) - before.get("tokens", 0))
    return {"object": "ldengine.selections", "model": model.name, "selection_layout": student.layout,
            "data": [{"index": c.index, "probabilities": c.probabilities} for c in chosen],
            "usage": usage(tokens, 0)}
