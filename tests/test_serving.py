"""The server's rules that need no model: the schedule of turns on the model, the
request budget's arithmetic, what a request body must be, and which addresses are
loopback. (``tests/test_serve.py`` drives them over HTTP with the real student.)"""
from __future__ import annotations

import threading
import time

import pytest

from ldengine.serving.endpoints import _cost
from ldengine.serving.http import _authorized
from ldengine.serving.limits import Limits, RequestError
from ldengine.serving.requests import parse_body
from ldengine.serving.server import is_loopback
from ldengine.serving.turns import Turns


def _in_thread(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_turns_go_in_arrival_order_one_pass_at_a_time():
    """It gives the model to waiting passes first come first served: a request that just
    had a pass waits behind the ones that asked meanwhile (no thread takes it straight back)."""
    turns, order, holding = Turns(Limits()), [], threading.Event()

    def long() -> None:
        with turns.request():
            with turns.step():
                holding.set()
                time.sleep(0.3)          # the others queue meanwhile
                order.append("long 1")
            with turns.step():
                order.append("long 2")

    def short(name: str) -> None:
        with turns.request(), turns.step():
            order.append(name)

    threads = [_in_thread(long)]
    holding.wait(5)
    for name in ("short a", "short b"):
        threads.append(_in_thread(lambda name=name: short(name)))
        time.sleep(0.05)
    for thread in threads:
        thread.join(5)
    assert order == ["long 1", "short a", "short b", "long 2"]
    assert turns.active == 0


def test_it_refuses_a_request_beyond_the_admitted_number_with_retry_after():
    """It answers 429 with a Retry-After of at least 1 s when ``requests`` are already in."""
    turns = Turns(Limits(requests=1, request_s=30))
    with turns.request():
        with pytest.raises(RequestError) as refused:
            with turns.request():
                pass
    assert refused.value.status == 429 and 1 <= refused.value.retry_after <= 30
    with turns.request():      # the place is free again
        pass


def test_it_gives_up_on_a_first_turn_after_the_queue_timeout():
    """It answers 503 with Retry-After to a request that waited ``queue_s`` for its first pass."""
    turns, holding, release = Turns(Limits(queue_s=0.2)), threading.Event(), threading.Event()

    def hold() -> None:
        with turns.request(), turns.step():
            holding.set()
            release.wait(5)

    thread = _in_thread(hold)
    holding.wait(5)
    start = time.monotonic()
    with pytest.raises(RequestError) as late:
        with turns.request(), turns.step():
            pass
    release.set()
    thread.join(5)
    assert late.value.status == 503 and late.value.code == "queue_timeout" and late.value.retry_after >= 1
    assert 0.15 <= time.monotonic() - start < 3
    with turns.request(), turns.step():      # the line is not left blocked by the one that gave up
        pass


def test_it_stops_a_request_that_runs_past_its_time_budget():
    """It answers 503 (request_timeout) when a request's wall-clock budget ends before its next pass."""
    turns = Turns(Limits(request_s=0.2))
    with pytest.raises(RequestError) as late:
        with turns.request():
            with turns.step():
                time.sleep(0.3)
            with turns.step():
                pass
    assert late.value.status == 503 and late.value.code == "request_timeout"
    assert "--request-timeout" in str(late.value)


def test_a_pass_outside_an_admitted_request_is_a_programming_error():
    """It refuses a pass that no admitted request asked for."""
    with pytest.raises(RuntimeError):
        with Turns(Limits()).step():
            pass


def test_the_budget_counts_tokens_as_the_passes_run_them():
    """It counts a batched pass's common beginning once, each prompt in full when more than
    one token is written, and max_tokens once per prompt."""
    shared = [[1, 2, 3, 4, 10], [1, 2, 3, 4, 11, 12]]
    assert _cost(shared, 0, scored=True) == (4 + 1 + 2, 0)
    assert _cost(shared, 1, scored=False) == (7, 2)
    assert _cost(shared, 1, scored=True) == (14, 2)
    assert _cost(shared, 5, scored=False) == (11, 10)
    assert _cost([[7, 8, 9]], 0, scored=True) == (3, 0)


@pytest.mark.parametrize("raw, where", [
    (b'{"messages": [{"role": "user", "content": "hi \\ud800"}]}', "messages[0].content"),
    (b'{"prompt": ["ok", "\\udc00x"]}', "prompt[1]"),
    (b'{"stop": "\\ud83d"}', "stop"),                 # half of a surrogate pair
    (b'{"a\\ud800": 1}', "a\\ud800"),
])
def test_it_refuses_a_lone_surrogate_naming_where_it_is(raw, where):
    """It refuses text holding a lone surrogate with a 400 that names the field."""
    with pytest.raises(RequestError) as bad:
        parse_body(raw)
    assert bad.value.status == 400 and bad.value.param == where and "lone surrogate" in str(bad.value)
    str(bad.value).encode("utf-8")      # the message itself is valid text


@pytest.mark.parametrize("raw", [b'{"prompt": "caf\xe9"}', b'\xff\xfe{}', b'{"a": "\xed\xa0\x80"}'])
def test_it_refuses_bytes_that_are_not_utf8(raw):
    """It refuses a body that is not UTF-8 (CESU-encoded surrogates included) with a 400."""
    with pytest.raises(RequestError, match="not UTF-8") as bad:
        parse_body(raw)
    assert bad.value.status == 400


def test_it_accepts_a_surrogate_pair_and_deep_json():
    """It reads an escaped surrogate pair as the one character it encodes."""
    assert parse_body(b'{"prompt": "\\ud83d\\ude00"}') == {"prompt": "\U0001F600"}
    deep = b'{"a": ' + b"[" * 500 + b"]" * 500 + b"}"
    assert parse_body(deep)["a"]


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.1", False), ("example.org", False),
])
def test_it_knows_a_loopback_address(host, loopback):
    """It treats only loopback addresses (and the name localhost) as private to this machine."""
    assert is_loopback(host) is loopback


def test_it_reads_a_bearer_key():
    """It accepts exactly ``Bearer KEY`` (the scheme in any case), nothing else."""
    assert _authorized("Bearer k1", "k1") and _authorized("bearer k1", "k1")
    assert not any(_authorized(h, "k1") for h in (None, "", "k1", "Bearer k2", "Basic k1", "Bearer k1x"))
