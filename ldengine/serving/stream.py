"""Answers written as they are made: ``"stream": true`` on ``/v1/chat/completions`` and
``/v1/completions``, as OpenAI's clients read them (the events' framing is
``ldengine.serving.http``'s).

Each written token may release text to the client, but only text that is final: whole
characters (a character split over two tokens waits for its second), and never what could
be the beginning of a stop string (it waits until the stop string is ruled out or cut).
So the pieces put together are exactly the answer the same request gets unstreamed, and
each token's log-probability travels with the piece its text begins in.

A chat stream sends the role first, then the pieces, then a chunk with an empty delta and
the ``finish_reason``; with ``stream_options: {"include_usage": true}`` a last chunk with
no choices carries the usage. A completions stream answers one prompt, without ``echo``.
Everything a request can be refused for is checked before its first event, so a refusal
is an ordinary HTTP error; only a failure while writing (the time budget) ends a stream
with an ``error`` event.
"""
from __future__ import annotations

from typing import Callable, cast

from ldengine.serving.endpoints import (Writing, chat_logprobs, chat_request, envelope, legacy_logprobs, usage)
from ldengine.serving.limits import RequestError
from ldengine.serving.model import Completion, ServedModel, Token
from ldengine.serving.requests import (MAX_TOP_LOGPROBS, check_budget, check_length, common_options, get_field,
                                       max_tokens_asked, prompt_list, ranged_field, stop_strings, stream_usage)

Emit = Callable[[dict], bool]      # sends one event; False once the client has gone


class Released:
    """The text of an answer as it grows, released only where final (see the module's note)."""

    def __init__(self, model: ServedModel, stops: list[str]):
        self.model, self.stops = model, stops
        self.sent = ""                # text released so far
        self.tokens = 0               # tokens released so far
        self.starts: list[int] = []   # where each written token's text begins

    def step(self, tokens: list[Token]) -> tuple[str, list[Token]]:
        """(the text now final and not yet released, the tokens that begin in it)."""
        decode = self.model.student.tokenizer.decode
        while len(self.starts) < len(tokens):
            self.starts.append(len(decode([t.id for t in tokens[:len(self.starts)]])))
        text = cast(str, decode([t.id for t in tokens]))     # a list of ids decodes to one text
        final = len(text)
        while final and text[final - 1] == "\ufffd":           # a character still missing its bytes
            final -= 1
        final -= max((k for s in self.stops for k in range(1, len(s)) if text[:final].endswith(s[:k])), default=0)
        if final <= len(self.sent) or not text.startswith(self.sent):
            return "", []
        piece, self.sent = text[len(self.sent):final], text[:final]
        begun = sum(1 for start in self.starts if start < final)
        new, self.tokens = tokens[self.tokens:begun], max(self.tokens, begun)
        return piece, new

    def close(self, done: Completion) -> tuple[str, list[Token]]:
        """What remains of the finished answer ``done`` (its stop string already cut)."""
        piece = done.text[len(self.sent):] if done.text.startswith(self.sent) else ""
        self.sent = done.text
        new, self.tokens = done.tokens[self.tokens:], len(done.tokens)
        return piece, new


def chat_stream(body: dict, model: ServedModel, emit: Emit) -> None:
    """``POST /v1/chat/completions`` with ``"stream": true``: chunks through ``emit``."""
    asked = chat_request(body, model, streamed=True)
    with_usage = stream_usage(body)
    first = envelope("chat.completion.chunk", model, [])
    role = [True]

    def send(piece: str, tokens: list[Token], finish: str | None = None) -> bool:
        delta: dict = {"role": "assistant"} if role[0] else {}
        role[0] = False
        if finish is None:
            delta["content"] = piece
        logprobs = chat_logprobs(tokens, model) if asked.logprobs and tokens else None
        return emit({**first, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                                           "finish_reason": finish}]})

    done = _written(model, asked, lambda piece, tokens: send(piece, tokens))
    if done is None:
        return
    piece, tokens = done[1].close(done[0])
    if piece or tokens or role[0]:
        send(piece, tokens)
    send("", [], done[0].finish_reason)
    if with_usage:
        emit({**first, "choices": [], "usage": usage(len(asked.ids), len(done[0].tokens))})


def completion_request(body: dict, model: ServedModel) -> tuple[Writing, str]:
    """A streamed completions request's fields, checked: one prompt, no ``echo``."""
    common_options(body, model, streamed=True)
    if get_field(body, "echo", bool, False):
        raise RequestError("'echo' cannot be streamed; send it with 'stream': false", param="echo")
    prompts = prompt_list(body)
    if len(prompts) != 1:
        raise RequestError("a stream answers one prompt; send a list of prompts with 'stream': false",
                           param="prompt")
    stops, max_tokens = stop_strings(body), max_tokens_asked(body, model, 1)
    top_n = ranged_field(body, "logprobs", 0, 0, MAX_TOP_LOGPROBS) if body.get("logprobs") is not None else None
    ids = model.text_ids(prompts[0])
    check_length(model, ids, max_tokens)
    check_budget(model, len(ids), max_tokens)
    return Writing(ids, max_tokens, stops, top_n or 0, top_n is not None), prompts[0]


def completion_stream(body: dict, model: ServedModel, emit: Emit) -> None:
    """``POST /v1/completions`` with ``"stream": true``: chunks through ``emit``."""
    asked, _ = completion_request(body, model)
    with_usage = stream_usage(body)
    first = envelope("text_completion", model, [])
    offset = [0]

    def send(piece: str, tokens: list[Token], finish: str | None = None) -> bool:
        logprobs = legacy_logprobs(tokens, offset[0]) if asked.logprobs else None
        offset[0] += len(piece)
        return emit({**first, "choices": [{"index": 0, "text": piece, "logprobs": logprobs,
                                           "finish_reason": finish}]})

    done = _written(model, asked, send)
    if done is None:
        return
    piece, tokens = done[1].close(done[0])
    send(piece, tokens, done[0].finish_reason)
    if with_usage:
        emit({**first, "choices": [], "usage": usage(len(asked.ids), len(done[0].tokens))})


def _written(model: ServedModel, asked: Writing,
             send: Callable[[str, list[Token]], bool]) -> tuple[Completion, Released] | None:
    """Write the answer, sending each final piece as it is made; None when the client went away."""
    released = Released(model, asked.stops)

    def on_token(tokens: list[Token]) -> bool:
        piece, new = released.step(tokens)
        return send(piece, new) if piece else True

    with model.serving():
        done = model.generate(asked.ids, asked.max_tokens, asked.stops, asked.top_n, on_token)
    return None if done.finish_reason == "cancelled" else (done, released)
