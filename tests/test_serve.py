"""``ldengine serve`` and the ``openai`` student backend, with the real parts: the
SmolLM2 student with the committed pursuit LD adapter behind a real HTTP server on
an ephemeral localhost port, and the backend scoring selections through it."""
from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from ldengine.adapters import find_adapter
from ldengine.errors import LDEngineError
from ldengine.ld import RetrieverProvider, StudentSelector, selection_examples, stage_inputs
from ldengine.models.openai_student import load_openai_student, parse_address, scoring_prompts
from ldengine.serve import default_model_name, serve_command
from ldengine.serving.endpoints import _cost
from ldengine.serving.http import MAX_BODY_BYTES
from ldengine.serving.limits import Limits
from ldengine.serving.model import PASS_TOKENS, ROW_TOKENS, _groups
from ldengine.serving.server import make_server


@dataclass
class Served:
    url: str        # http://127.0.0.1:PORT/v1
    model: str
    student: Any    # the in-process student the server answers with
    adapter: Any

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict | None = None) -> tuple[int, dict]:
        """One request on a fresh connection: (status, JSON answer)."""
        status, _, answer = self.exchange(method, path, body, raw, headers)
        return status, answer

    def exchange(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                 headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, dict]:
        """One request on a fresh connection: (status, response headers, JSON answer)."""
        parts = urllib.parse.urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            connection.request(method, parts.path + path, body=data,
                               headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            return response.status, response.headers, json.loads(response.read())
        finally:
            connection.close()


@contextlib.contextmanager
def running(server: Any) -> Iterator[Any]:
    """``server`` serving from a thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def served(pursuit_base):
    """The real student and adapter served from a thread; the same student object answers
    in-process in the comparisons (the tests never use both at once)."""
    from ldengine.models import load_student
    adapter = find_adapter("pursuit", pursuit_base)
    student = load_student(adapter=adapter)
    with running(make_server(student, "127.0.0.1", 0, default_model_name(student, adapter))) as server:
        yield Served(server.url, server.model.name, student, adapter)


@contextlib.contextmanager
def another_server(served: Served, api_key: str | None = None, **limits: Any) -> Iterator[tuple[Served, Any]]:
    """A second server on the same student, with a key and its own limits: (its Served, the server)."""
    server = make_server(served.student, "127.0.0.1", 0, served.model, api_key=api_key, limits=Limits(**limits))
    with running(server):
        yield Served(server.url, served.model, served.student, served.adapter), server


@pytest.fixture(scope="module")
def examples(registry, pursuit_task, pursuit_base):
    """Real selections met by the expert in a game: in the retriever's order and shuffled."""
    from ldengine.retriever import Retriever
    pairs = stage_inputs(pursuit_task, pursuit_base, registry.get("evaders", "greedy").obj, [3])[:6]
    provider = RetrieverProvider(pursuit_task, pursuit_base, Retriever.for_base(pursuit_base), k=5)
    return (selection_examples(pursuit_task, pursuit_base, provider, pairs[:3])
            + selection_examples(pursuit_task, pursuit_base, provider, pairs[3:], shuffle_seed=1))


def chat(served: Served, **fields: Any) -> tuple[int, dict]:
    body = {"model": served.model, "messages": [{"role": "user", "content": "Name a colour."}], **fields}
    return served.call("POST", "/chat/completions", body)


# ---- the API ------------------------------------------------------------------


def test_it_lists_the_served_model_with_its_weights(served):
    """It lists one model, named after the adapter, carrying the base and adapter hashes."""
    status, answer = served.call("GET", "/models")
    assert status == 200 and answer["object"] == "list" and len(answer["data"]) == 1
    entry = answer["data"][0]
    assert entry["id"] == served.model == served.adapter.name and entry["object"] == "model"
    assert entry["model_hash"] == served.student.model_hash
    assert entry["adapter_hash"] == served.student.adapter_hash is not None
    assert served.call("GET", f"/models/{served.model}") == (200, entry)


@pytest.mark.parametrize("message", ["Name a colour.", "Say hi"])  # "Say hi": an emoji over three tokens
def test_a_chat_completion_answers_greedily_with_logprobs_and_usage(served, message):
    """It writes what the in-process student writes for the same message, and gives each
    token's log-probability and raw bytes with its top alternatives (the chosen one first)."""
    status, answer = chat(served, max_tokens=6, logprobs=True, top_logprobs=3,
                          messages=[{"role": "user", "content": message}])
    assert status == 200 and answer["object"] == "chat.completion" and answer["model"] == served.model
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert choice["message"]["content"] == served.student.generate(message, max_new_tokens=6)[0]
    content = choice["logprobs"]["content"]
    assert b"".join(bytes(t["bytes"]) for t in content).decode() == choice["message"]["content"]
    for token in content:
        top = token["top_logprobs"]
        assert len(top) == 3 and top[0]["token"] == token["token"]
        assert top[0]["logprob"] == pytest.approx(token["logprob"]) and token["logprob"] <= 0
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
    usage = answer["usage"]
    assert usage["completion_tokens"] == len(content) > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_a_stop_string_ends_the_answer_before_it(served):
    """It cuts the answer at the first stop string, which is not returned."""
    _, full = chat(served, max_tokens=8)
    text = full["choices"][0]["message"]["content"]
    stop = text[2:4]
    status, answer = chat(served, max_tokens=8, stop=[stop])
    assert status == 200 and answer["choices"][0]["finish_reason"] == "stop"
    assert answer["choices"][0]["message"]["content"] == text[:text.find(stop)]


def _echo_last(served, prompts: list[str]) -> list[float]:
    """Each prompt's last token's log-probability, from an echo request."""
    _, echoed = served.call("POST", "/completions", {"model": served.model, "prompt": prompts, "max_tokens": 0,
                                                     "echo": True, "logprobs": 0})
    return [c["logprobs"]["token_logprobs"][-1] for c in echoed["choices"]]


def test_a_raw_prompt_gets_the_next_tokens_top_logprobs(served, examples):
    """It reads a completions prompt as given and returns the next token's top 20, one
    choice per prompt of a list, and echoes `` Yes`` and `` No`` with finite log-probabilities.
    (Which candidate wins is asserted where the backend selects, below: an adapter may read
    selections in the rows layout, which these texts do not express.)"""
    example = examples[0]
    assert example.retrieved
    prompts = scoring_prompts(*example.as_tuple()[:3])
    status, answer = served.call("POST", "/completions", {"model": served.model, "prompt": prompts,
                                                          "max_tokens": 1, "logprobs": 20})
    assert status == 200 and answer["object"] == "text_completion"
    assert [c["index"] for c in answer["choices"]] == list(range(len(prompts)))
    for choice in answer["choices"]:
        top = choice["logprobs"]["top_logprobs"][0]
        assert len(top) == 20 and choice["text"] == choice["logprobs"]["tokens"][0] == max(top, key=top.get)
    yes, no = _echo_last(served, [p + " Yes" for p in prompts]), _echo_last(served, [p + " No" for p in prompts])
    assert len(yes) == len(no) == len(prompts) and all(lp < 0 for lp in yes + no)


def test_echo_scores_each_prompt_token_whatever_its_rank(served, examples):
    """It returns, with echo, every prompt token's log-probability (none for the first):
    the last one equals what the next-token request says of that token, and `` No`` is
    scored too, though after the adapter it is often outside the top 20."""
    example = examples[0]
    text = scoring_prompts(*example.as_tuple()[:3])[example.answer]
    _, ahead = served.call("POST", "/completions", {"model": served.model, "prompt": text,
                                                    "max_tokens": 1, "logprobs": 20})
    status, echoed = served.call("POST", "/completions", {
        "model": served.model, "prompt": [text + " Yes", text + " No"], "max_tokens": 0, "echo": True, "logprobs": 0})
    assert status == 200 and echoed["usage"]["completion_tokens"] == 0
    yes, no = (c["logprobs"] for c in echoed["choices"])
    assert echoed["choices"][0]["text"] == text + " Yes"
    assert yes["tokens"][-1] == " Yes" and no["tokens"][-1] == " No"
    assert yes["token_logprobs"][0] is None and all(lp <= 0 for lp in yes["token_logprobs"][1:])
    top = ahead["choices"][0]["logprobs"]["top_logprobs"][0]
    token = ahead["choices"][0]["text"]
    assert _echo_last(served, [text + token])[0] == pytest.approx(top[token], abs=1e-4)
    # Only the margin over the K candidates decides (see the test above); ` No` is scored all the same.
    assert no["token_logprobs"][-1] < 0


LONG_PROMPT_LISTS = {  # a long prompt with an unrelated one; a long and a short tail after a common beginning
    "unrelated": lambda long_text: [long_text, "Name a colour:"],
    "a long tail": lambda long_text: [long_text, long_text[:len(long_text) // 2] + "Name a colour:"],
}


@pytest.mark.parametrize("kind", LONG_PROMPT_LISTS)
def test_long_and_unrelated_prompts_are_scored_as_one_pass_scores_them(served, examples, kind):
    """It scores prompts longer than a pass, and prompts with nothing or only a beginning in
    common, as one plain forward pass over each prompt does (within 1e-3), echo and next token."""
    import torch
    long_text = examples[0].prefix * 3 + examples[0].query
    prompts = LONG_PROMPT_LISTS[kind](long_text)
    status, echoed = served.call("POST", "/completions", {"model": served.model, "prompt": prompts,
                                                          "max_tokens": 0, "echo": True, "logprobs": 0})
    _, ahead = served.call("POST", "/completions", {"model": served.model, "prompt": prompts, "max_tokens": 1,
                                                    "logprobs": 1})
    assert status == 200
    tokenizer, model = served.student.tokenizer, served.student.model
    for prompt, choice, next_choice in zip(prompts, echoed["choices"], ahead["choices"]):
        ids = tokenizer(prompt)["input_ids"]
        with torch.inference_mode():
            logprobs = model(input_ids=torch.tensor([ids])).logits[0].double().log_softmax(-1)
        expected = [float(logprobs[t - 1, i]) for t, i in enumerate(ids) if t]
        assert choice["logprobs"]["token_logprobs"][1:] == pytest.approx(expected, abs=1e-3)
        best = int(logprobs[-1].argmax())
        assert next_choice["logprobs"]["token_logprobs"][0] == pytest.approx(float(logprobs[-1, best]), abs=1e-3)
    assert len(tokenizer(long_text)["input_ids"]) > 3 * PASS_TOKENS


def test_prompt_tails_run_in_bounded_groups():
    """It groups prompt tails so a pass holds at most PASS_TOKENS padded tokens, a longer tail alone."""
    tails = [[1] * 10] * 150 + [[2] * (PASS_TOKENS + 5)] + [[3] * 3]
    groups = _groups(tails)
    assert [t for g in groups for t in g] == tails
    assert all(len(g) * max(map(len, g)) <= PASS_TOKENS or len(g) == 1 for g in groups)
    # each row of a pass holds its own copy of the shared prefix: 32 one-token tails over a
    # 2,035-token prefix are one pass of 32 rows by the tails alone, and 8 passes with the prefix
    ones = [[7]] * 32
    assert len(_groups(ones)) == 1
    groups = _groups(ones, shared=2035)
    assert [t for g in groups for t in g] == ones and len(groups) == 8
    assert all(len(g) * (2035 + max(map(len, g))) <= ROW_TOKENS for g in groups)


DROP = "<drop this field>"
BAD_REQUESTS = [  # (what, method, path, raw body or changes to a good body, status)
    ("not JSON", "POST", "/chat/completions", b"{not json", 400),
    ("a JSON list", "POST", "/chat/completions", b"[1, 2]", 400),
    ("no body", "POST", "/chat/completions", b"", 400),
    ("JSON nested too deep", "POST", "/chat/completions", b"[" * 100_000 + b"]" * 100_000, 400),
    ("no messages", "POST", "/chat/completions", {"messages": DROP}, 400),
    ("empty messages", "POST", "/chat/completions", {"messages": []}, 400),
    ("messages not a list", "POST", "/chat/completions", {"messages": "hi"}, 400),
    ("a message without content", "POST", "/chat/completions", {"messages": [{"role": "user"}]}, 400),
    ("max_tokens as text", "POST", "/chat/completions", {"max_tokens": "5"}, 400),
    ("max_tokens as a bool", "POST", "/chat/completions", {"max_tokens": True}, 400),
    ("max_tokens 0", "POST", "/chat/completions", {"max_tokens": 0}, 400),
    ("max_tokens beyond the context", "POST", "/chat/completions", {"max_tokens": 10 ** 9}, 400),
    ("top_logprobs 50", "POST", "/chat/completions", {"logprobs": True, "top_logprobs": 50}, 400),
    ("top_logprobs without logprobs", "POST", "/chat/completions", {"top_logprobs": 2}, 400),
    ("a stop that is a number", "POST", "/chat/completions", {"stop": 3}, 400),
    ("temperature as text", "POST", "/chat/completions", {"temperature": "hot"}, 400),
    ("sampling asked (temperature 0.7)", "POST", "/chat/completions", {"temperature": 0.7}, 400),
    ("sampling asked (top_p 0.9)", "POST", "/completions", {"top_p": 0.9}, 400),
    ("stream as text", "POST", "/chat/completions", {"stream": "yes"}, 400),
    ("stream_options without a stream", "POST", "/chat/completions", {"stream_options": {"include_usage": True}}, 400),
    ("an unknown stream option", "POST", "/chat/completions", {"stream": True, "stream_options": {"x": 1}}, 400),
    ("a streamed echo", "POST", "/completions", {"stream": True, "echo": True}, 400),
    ("a stream of two prompts", "POST", "/completions", {"stream": True, "prompt": ["a", "b"]}, 400),
    ("a streamed selection", "POST", "/ldengine/selections", {"stream": True, "items": [{"query": "q",
                                                                                        "options": ["a", "b"]}]}, 400),
    ("two answers", "POST", "/chat/completions", {"n": 2}, 400),
    ("no model", "POST", "/chat/completions", {"model": DROP}, 400),
    ("an unknown model", "POST", "/chat/completions", {"model": "gpt-9"}, 404),
    ("a lone surrogate", "POST", "/chat/completions",
     b'{"model": "m", "messages": [{"role": "user", "content": "hi \\ud800"}]}', 400),
    ("a lone surrogate in a prompt", "POST", "/completions", b'{"model": "m", "prompt": ["a", "\\udfff"]}', 400),
    ("bytes that are not UTF-8", "POST", "/completions", b'{"model": "m", "prompt": "caf\xe9"}', 400),
    ("a token-id prompt", "POST", "/completions", {"prompt": [1, 2, 3]}, 400),
    ("an empty prompt", "POST", "/completions", {"prompt": ""}, 400),
    ("completions logprobs 21", "POST", "/completions", {"logprobs": 21}, 400),
    ("too many prompt tokens", "POST", "/completions", {"prompt": ["word " * 1100] * 64}, 400),
    ("an unknown endpoint", "POST", "/embeddings", {}, 404),
    ("GET on a POST endpoint", "GET", "/chat/completions", None, 405),
    ("an unknown model id", "GET", "/models/gpt-9", None, 404),
]


def good_body(served: Served, path: str, changes: dict) -> dict:
    """A valid request for ``path`` with ``changes`` applied (``DROP`` removes a field)."""
    body = {"model": served.model}
    body.update({"prompt": "a"} if path == "/completions" else {"messages": [{"role": "user", "content": "hi"}]})
    body.update(changes)
    return {k: v for k, v in body.items() if v != DROP}


@pytest.mark.parametrize("what, method, path, body, status", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_it_refuses_a_bad_request_with_a_json_error_and_keeps_serving(served, what, method, path, body, status):
    """It answers a bad request with a 4xx JSON error (message and type, no traceback),
    and answers the next request as before."""
    raw = body if isinstance(body, bytes) else None
    fields = good_body(served, path, body) if isinstance(body, dict) else None
    got, answer = served.call(method, path, body=fields, raw=raw)
    assert got == status, answer
    error = answer["error"]
    assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str)
    assert "Traceback" not in json.dumps(answer)
    assert served.call("GET", "/models")[0] == 200


def test_it_refuses_an_oversize_body_without_reading_it(served):
    """It answers 413 to a body over the limit from its Content-Length alone, then serves on."""
    parts = urllib.parse.urlsplit(served.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n{{".encode())
        reply = sock.makefile("rb").read()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
    assert "exceeds" in json.loads(body)["error"]["message"]
    assert served.call("GET", "/models")[0] == 200


def test_requests_at_the_same_time_are_all_answered(served):
    """It serves concurrent requests one at a time on the one model, each correctly."""
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(chat(served, max_tokens=3))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 3 and all(status == 200 for status, _ in results)
    assert len({a["choices"][0]["message"]["content"] for _, a in results}) == 1


# ---- keys, budgets, turns -------------------------------------------------------------

KEY = "test-key-7f3a"


def test_it_answers_only_requests_bearing_its_api_key(served):
    """It answers 401 with an OpenAI-style error to a request without the key, with another
    key or without the Bearer scheme, on every path and before reading a body; it serves
    a request bearing the key; GET /health needs none."""
    with another_server(served, api_key=KEY) as (keyed, _):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                        {"Authorization": f"Bearer  {KEY}"}, {"Authorization": f"Bearer {KEY}  x"}):
            for method, path, body in (("GET", "/models", None), ("POST", "/completions", {"prompt": "a"}),
                                       ("GET", "/nowhere", None)):
                status, head, answer = keyed.exchange(method, path, body, headers=headers)
                assert status == 401 and answer["error"]["code"] == "invalid_api_key", (headers, path)
                assert head["WWW-Authenticate"] == "Bearer" and KEY not in json.dumps(answer)
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert keyed.call("GET", "/models", headers=bearer)[0] == 200
        body = {"model": keyed.model, "prompt": "Rules:", "max_tokens": 1}
        assert keyed.call("POST", "/completions", body, headers=bearer)[0] == 200
        # a supervisor's probe needs no key and is told nothing but that the server is up
        parts = urllib.parse.urlsplit(keyed.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.request("GET", "/health")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read()) == {"status": "ok"}
        connection.close()


def test_a_body_with_a_5000_digit_integer_is_a_400():
    """An integer longer than Python converts is bad JSON for the request (it was a 500)."""
    from ldengine.serving.requests import RequestError, parse_body
    with pytest.raises(RequestError, match="not valid JSON") as caught:
        parse_body(b'{"max_tokens": ' + b"9" * 5000 + b"}")
    assert caught.value.status == 400


def test_the_backend_sends_the_key_from_its_environment(served, monkeypatch):
    """It sends $LDENGINE_STUDENT_KEY as a bearer token; without it a keyed server refuses it."""
    from ldengine.models.openai_student import KEY_ENV
    with another_server(served, api_key=KEY) as (keyed, _):
        monkeypatch.delenv(KEY_ENV, raising=False)
        with pytest.raises(LDEngineError, match="HTTP 401"):
            load_openai_student(path=keyed.url, adapter=served.adapter)
        monkeypatch.setenv(KEY_ENV, KEY)
        remote = load_openai_student(path=keyed.url, adapter=served.adapter)
        assert remote.generate("Name a colour.", max_new_tokens=3) == \
            served.student.generate("Name a colour.", max_new_tokens=3)


def test_it_refuses_to_listen_beyond_loopback_without_a_key(monkeypatch):
    """It refuses a non-loopback address without an API key, in one line with a non-zero
    exit code and before loading any model; with a key it would serve there."""
    import ldengine.models
    monkeypatch.delenv("LDENGINE_API_KEY", raising=False)
    monkeypatch.setattr(ldengine.models, "load_student", lambda **_: pytest.fail("loaded a model"))
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        result = CliRunner().invoke(serve_command, ["--host", host])
        assert result.exit_code != 0 and "without an API key" in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    with pytest.raises(LDEngineError, match="without an API key"):
        make_server(object(), "0.0.0.0", 0)


def test_a_stalled_body_gets_408_within_the_body_timeout(served):
    """It answers 408 and closes the connection when a body stops arriving, after the body
    timeout (1 s here), not after minutes; then serves on."""
    with another_server(served, body_s=1.0) as (quick, _):
        parts = urllib.parse.urlsplit(quick.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            start = time.monotonic()
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b'Content-Length: 100\r\n\r\n{"model": ')
            reply = sock.makefile("rb").read()
            waited = time.monotonic() - start
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert 0.9 <= waited < 15
        assert quick.call("GET", "/models")[0] == 200


def test_slow_headers_and_idle_sockets_are_closed_and_authorised_clients_served(served, caplog):
    """Issue 34: a client sending its headers a byte at a time, or opening sockets and saying
    nothing, held them open for ever, and a cap per address alone would lock out a user who
    shares the flood's address (loopback). Now a connection without a whole request line and
    headers within the header timeout (1 s here) is closed; a connection beyond the per-client
    cap (3 here) closes the one of that address that has waited longest for its headers, and
    20 such closings write one log line; a request with the key is answered while the flood's
    sockets fill the cap."""
    with another_server(served, api_key="k3y", header_s=1.0, per_client=3) as (quick, _):
        parts = urllib.parse.urlsplit(quick.url)
        address = (parts.hostname, parts.port)
        slow = socket.create_connection(address, timeout=30)
        start = time.monotonic()
        slow.sendall(b"GET /v1/models HTTP/1.1\r\nHo")
        assert slow.recv(100) == b""                      # closed by the server
        assert 0.9 <= time.monotonic() - start < 10
        slow.close()
        with caplog.at_level(logging.WARNING, logger="ldengine.serving.guard"):
            idle = [socket.create_connection(address, timeout=30) for _ in range(23)]
            start = time.monotonic()
            assert all(s.recv(100) == b"" for s in idle[:20]) and time.monotonic() - start < 0.9   # at once
            status, answer = quick.call("GET", "/models", headers={"Authorization": "Bearer k3y"})
            assert status == 200 and answer["data"][0]["id"] == quick.model          # the cap is full: served
        refused = [r for r in caplog.records if "closed" in r.getMessage()]
        assert len(refused) == 1, [r.getMessage() for r in refused]       # 21 closings, one line
        assert "waited longest" in refused[0].getMessage()
        for sock in idle[20:]:
            assert sock.recv(100) == b""                  # the last three: one to make room, two at the deadline
            sock.close()
        assert time.monotonic() - start < 10
        for sock in idle[:20]:
            sock.close()
        assert quick.call("GET", "/models")[0] == 401


def test_a_connection_beyond_the_cap_is_closed_when_the_others_are_inside_requests(served):
    """When every connection of an address is inside a request (here: one whose body is still
    arriving), a newcomer beyond the cap (1 here) is closed at once, before a byte is read;
    the request in progress goes on (408 when its body stops)."""
    with another_server(served, header_s=5.0, body_s=2.0, per_client=1) as (quick, _):
        parts = urllib.parse.urlsplit(quick.url)
        address = (parts.hostname, parts.port)
        with socket.create_connection(address, timeout=30) as busy:
            busy.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b'Content-Length: 100\r\n\r\n{"model": ')
            time.sleep(0.3)                                 # its headers are read: it is inside a request
            with socket.create_connection(address, timeout=30) as newcomer:
                start = time.monotonic()
                assert newcomer.recv(100) == b"" and time.monotonic() - start < 0.9
            assert busy.makefile("rb").read().startswith(b"HTTP/1.1 408")
        assert quick.call("GET", "/models")[0] == 200


def test_refusals_are_logged_at_most_once_a_period_with_the_count_held_back(caplog):
    from ldengine.serving.guard import Throttled
    now = [0.0]
    throttled = Throttled(every=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="ldengine.serving.guard"):
        logged = [throttled.warning("refused %s", i) for i in range(1000)]
        now[0] = 10.5
        logged.append(throttled.warning("refused %s", "late"))
    assert logged.count(True) == 2 and logged[0] and logged[-1]
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0", "refused late (999 more like it in the last 10 s not logged)"]


OVER_BUDGET = [  # (what, path, fields): each within the old caps, each held the model for minutes
    ("8 unrelated prompts of ~1,050 tokens scored with echo", "/completions",
     {"prompt": [f"{i} " + "apple river stone " * 350 for i in range(8)], "max_tokens": 0, "echo": True,
      "logprobs": 0}),
    ("8 prompts written 300 tokens each", "/completions", {"prompt": ["Once upon a time"] * 8, "max_tokens": 300}),
    ("a chat answer of 600 tokens", "/chat/completions",
     {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 600}),
]


@pytest.mark.parametrize("what, path, fields", OVER_BUDGET, ids=[o[0] for o in OVER_BUDGET])
def test_it_refuses_a_request_over_its_budget_before_running_it(served, what, path, fields):
    """It refuses with 400, saying why and what the budget is, a request whose size says it
    would read or write more tokens than one request may; the model never runs it."""
    calls = served.student.usage["model_calls"]
    status, answer = served.call("POST", path, {"model": served.model, **fields})
    assert status == 400 and answer["error"]["code"] == "request_budget_exceeded"
    assert answer["error"]["message"].startswith("over the request budget")
    assert f"read at most {Limits.read_tokens}" in answer["error"]["message"]
    assert served.student.usage["model_calls"] == calls


def test_the_engines_own_requests_fit_the_default_budget(served, examples, registry):
    """It admits what the engine itself sends, by the budget's own count: a selection among
    26 candidates scored with echo (the openai backend's request), and an emergency
    function written after the worked examples (160 tokens; chat answers up to 256)."""
    from ldengine.emergency.write import MAX_NEW_TOKENS, worked_examples, writing_prompt
    from ldengine.models.base import NO, YES
    limits, tokenizer = Limits(), served.student.tokenizer
    for example in examples:
        prefix, query, options = example.as_tuple()[:3]
        prompts = [t + a for t in scoring_prompts(prefix, query, (options * 6)[:26]) for a in (YES, NO)]
        read, written = _cost([tokenizer(p)["input_ids"] for p in prompts], 0, scored=True)
        assert read <= limits.read_tokens // 2 and written == 0
    kind = next(r.obj for r in registry.emergencies.values() if r.obj.task == "pursuit")
    prompt = writing_prompt(worked_examples(registry, "pursuit"), kind.header(kind.params(0)))
    read, written = _cost([tokenizer(prompt)["input_ids"]], MAX_NEW_TOKENS, scored=False)
    assert read <= limits.read_tokens // 4 and written <= 256 <= limits.written_tokens


def test_it_answers_429_with_retry_after_when_too_many_requests_are_in(served):
    """It answers 429 with Retry-After when its requests are all taken, and serves once one frees."""
    body = {"model": served.model, "prompt": "Rules:", "max_tokens": 1}
    with another_server(served, requests=1) as (busy, server):
        with server.model.turns.request():      # this thread's request takes the only place
            status, head, answer = busy.exchange("POST", "/completions", body)
        assert status == 429 and answer["error"]["code"] == "too_many_requests"
        assert int(head["Retry-After"]) >= 1
        assert busy.call("POST", "/completions", body)[0] == 200


def test_it_answers_503_with_retry_after_when_the_model_stays_busy(served):
    """It answers 503 with Retry-After to a request that waited the queue timeout for its
    first turn on the model (0.5 s here)."""
    body = {"model": served.model, "prompt": "Rules:", "max_tokens": 1}
    with another_server(served, queue_s=0.5) as (busy, server):
        with server.model.turns.request(), server.model.turns.step():    # this thread holds the model
            start = time.monotonic()
            status, head, answer = busy.exchange("POST", "/completions", body)
            waited = time.monotonic() - start
        assert status == 503 and answer["error"]["code"] == "queue_timeout"
        assert int(head["Retry-After"]) >= 1 and 0.4 <= waited < 15
        assert busy.call("POST", "/completions", body)[0] == 200


def test_a_short_request_is_answered_between_the_passes_of_a_long_one(served):
    """It answers a 1-token request while a long one (3 prompts of ~600 tokens scored with
    echo: 9 passes) runs, rather than after it, and both answers are right."""
    long_body = {"model": served.model, "prompt": [f"{i} " + "apple river stone " * 200 for i in range(3)],
                 "max_tokens": 0, "echo": True, "logprobs": 0}
    short_body = {"model": served.model, "prompt": "Rules:", "max_tokens": 1, "logprobs": 1}
    _, alone = served.call("POST", "/completions", short_body)
    with another_server(served) as (both, server):
        finished: dict = {}
        def run_long() -> None:
            finished["long"] = both.call("POST", "/completions", long_body)
        thread = threading.Thread(target=run_long)
        thread.start()
        while server.model.turns.active == 0 and thread.is_alive():
            time.sleep(0.01)
        status, short = both.call("POST", "/completions", short_body)
        assert "long" not in finished    # answered while the long one still ran
        thread.join(300)
    assert status == 200 and short["choices"][0]["logprobs"] == alone["choices"][0]["logprobs"]
    assert finished["long"][0] == 200 and len(finished["long"][1]["choices"]) == 3


# ---- the openai student backend --------------------------------------------------


def test_the_backend_selects_as_the_in_process_student(served, examples):
    """It makes the in-process student's choice on real selections, with its probabilities
    (within 1e-3): for an adapter in the rows layout the server selects itself
    (/v1/ldengine/selections); in the joint layout the backend scores Yes minus No from
    the server's log-probabilities."""
    remote = load_openai_student(path=f"openai:{served.url}#{served.model}", adapter=served.adapter)
    assert remote.layout == served.student.layout
    assert (remote.name, remote.model_hash, remote.adapter_hash) == \
        (served.model, served.student.model_hash, served.student.adapter_hash)
    for example in examples:
        local = served.student.select(*example.as_tuple()[:3])
        got = remote.select(*example.as_tuple()[:3])
        assert got.index == local.index
        assert got.probabilities == pytest.approx(local.probabilities, abs=1e-3)
    distinct = {(e.prefix, e.query, e.options) for e in examples}
    assert remote.usage["model_calls"] == len(distinct) and remote.usage["bounded_scores"] == 0
    assert remote.select_batch([e.as_tuple()[:3] for e in examples[:2]]) == \
        [remote.select(*e.as_tuple()[:3]) for e in examples[:2]]


def test_the_ld_agent_plays_the_same_game_through_the_server(served, pursuit_task, pursuit_base, registry):
    """It chooses the same functions at every stage of a seeded game as the in-process
    student (the LD agent's selector reads only select, name, hashes and usage)."""
    from ldengine.agents import AgentContext, LoopAgent
    from ldengine.retriever import Retriever
    retriever = Retriever.for_base(pursuit_base)
    evader = registry.get("evaders", "greedy").obj
    remote = load_openai_student(path=served.url, adapter=served.adapter)

    def play(student: Any) -> list:
        provider = RetrieverProvider(pursuit_task, pursuit_base, retriever, k=5)
        agent = LoopAgent(AgentContext(pursuit_task, pursuit_base), provider,
                          StudentSelector(pursuit_task, student, pursuit_base))
        chosen: list = []
        agent.observers.append(lambda decision: chosen.append(decision.functions))
        pursuit_task.play(agent, 0, 1, evader, lambda record: None)
        return chosen

    assert play(remote) == play(served.student) != []


def test_the_backend_writes_as_the_in_process_student(served):
    """It writes the in-process student's greedy answers, stopping where ``stop`` says
    (the emoji of "Say hi" spans three tokens), and refuses to sample."""
    remote = load_openai_student(path=served.url, adapter=served.adapter)
    local = served.student
    assert remote.generate("Name a colour.", max_new_tokens=6) == local.generate("Name a colour.", max_new_tokens=6)
    prompts, stop = ["Say hi", "Name a colour."], (lambda answer: " " in answer)
    answers = remote.generate_batch(prompts, max_new_tokens=6, stop=stop)
    assert answers == local.generate_batch(prompts, max_new_tokens=6, stop=stop) and all(answers)
    with pytest.raises(LDEngineError, match="greedily only"):
        remote.generate("Name a colour.", temperature=0.7)


def test_the_backend_refuses_a_server_with_another_adapter(served, tmp_path):
    """It refuses to play when the server's adapter is not the run's, naming the fix."""
    with pytest.raises(LDEngineError, match="ldengine serve` without --adapter"):
        load_openai_student(path=served.url, adapter=None)
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"adapter_hash": "0" * 64}))
    with pytest.raises(LDEngineError, match=re.escape(f"--adapter {other}")):
        load_openai_student(path=served.url, adapter=other)
    with pytest.raises(LDEngineError, match="runs in float32"):
        load_openai_student(path=served.url, adapter=served.adapter, dtype="bfloat16")


def test_the_backend_reports_a_wrong_model_or_no_server_as_user_errors(served):
    """It turns an unknown model, a bad address and an unreachable server into LDEngineError."""
    with pytest.raises(LDEngineError, match=f"serves {re.escape(served.model)}, not 'gpt-9'"):
        load_openai_student(path=f"openai:{served.url}#gpt-9", adapter=served.adapter)
    with pytest.raises(LDEngineError, match="looks like openai:http"):
        parse_address("openai:ftp://example#x")
    assert parse_address("openai:http://127.0.0.1:9/v1/#m%20n") == ("http://127.0.0.1:9/v1", "m n")
    with socket.socket() as sock:      # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LDEngineError, match="cannot reach the student server"):
        load_openai_student(path=f"http://127.0.0.1:{port}/v1")


def test_the_plugin_registers_the_openai_backend():
    """It registers ``openai`` through ldengine_register_students, as a third party would."""
    from ldengine_plugins import openai_student
    registered: list = []
    openai_student.ldengine_register_students(lambda *args: registered.append(args))
    assert [(name, loader) for name, loader, _ in registered] == [("openai", load_openai_student)]


def test_the_serve_command_documents_its_options():
    """It describes itself and its options in --help (and loads no model to do so)."""
    result = CliRunner().invoke(serve_command, ["--help"], catch_exceptions=False)
    assert result.exit_code == 0
    for option in ("--adapter", "--student", "--host", "--port", "--model-name", "127.0.0.1", "8000", "--api-key",
                   "LDENGINE_API_KEY", "--max-read-tokens", "--max-written-tokens", "--request-timeout",
                   "--queue-timeout", "--max-requests", "--body-timeout"):
        assert option in result.output


def test_the_openai_client_talks_to_the_server(served):
    """It answers the official ``openai`` Python client (models, chat with logprobs, completions)."""
    import openai  # the dev extra installs it: the test proves the API is the one clients expect
    with openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0) as client:
        assert [m.id for m in client.models.list()] == [served.model]
        reply = client.chat.completions.create(model=served.model, max_tokens=4, logprobs=True, top_logprobs=2,
                                               messages=[{"role": "user", "content": "Name a colour."}])
        assert reply.choices[0].message.content and len(reply.choices[0].logprobs.content[0].top_logprobs) == 2
        text = client.completions.create(model=served.model, prompt="Rules:", max_tokens=1, logprobs=5)
        assert len(text.choices[0].logprobs.top_logprobs[0]) == 5
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])


STREAMED = [  # (what, path, fields): each answered streamed and whole, the pieces must add up to the whole
    ("chat", "/chat/completions", {"messages": [{"role": "user", "content": "Name three colours."}],
                                   "max_tokens": 24, "logprobs": True, "top_logprobs": 2}),
    ("chat cut at a stop string", "/chat/completions",
     {"messages": [{"role": "user", "content": "Count from one to ten in words."}], "max_tokens": 40,
      "stop": [" four", "ive"]}),
    ("chat in characters of several tokens", "/chat/completions",
     {"messages": [{"role": "user", "content": "Write 'Grüße aus Köln ☕ 日本語' again."}], "max_tokens": 30}),
    ("completion", "/completions", {"prompt": "The rules of the game are", "max_tokens": 20, "logprobs": 2}),
]


def streamed(served: Served, path: str, body: dict) -> tuple[int, list]:
    """(status, the events' JSON payloads, ``"[DONE]"`` for the last) of a streamed request."""
    parts = urllib.parse.urlsplit(served.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    connection.request("POST", parts.path + path, body=json.dumps({**body, "stream": True}).encode(),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        return response.status, [json.loads(response.read())]
    assert response.getheader("content-type").startswith("text/event-stream")
    events = [line[6:] for line in response.read().decode().split("\n") if line.startswith("data: ")]
    connection.close()
    return 200, [e if e == "[DONE]" else json.loads(e) for e in events]


@pytest.mark.parametrize("what, path, fields", STREAMED, ids=[s[0] for s in STREAMED])
def test_a_streamed_answer_adds_up_to_the_whole_one(served, what, path, fields):
    """Issue 36: ``"stream": true`` was refused. Now the answer comes as server-sent events
    whose pieces, put together, are the unstreamed answer: same text (whole characters only,
    a stop string never sent), same tokens' log-probabilities, same finish_reason."""
    body = {"model": served.model, **fields}
    status, whole = served.call("POST", path, body)
    assert status == 200, whole
    status, events = streamed(served, path, {**body, "stream_options": {"include_usage": True}})
    assert status == 200 and events[-1] == "[DONE]", events
    chunks, usage = events[:-2], events[-2]
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]
    choices = [c["choices"][0] for c in chunks]
    if path == "/chat/completions":
        assert choices[0]["delta"]["role"] == "assistant" and chunks[0]["object"] == "chat.completion.chunk"
        pieces = [c["delta"].get("content", "") for c in choices]
        assert "".join(pieces) == whole["choices"][0]["message"]["content"]
        tokens = [t for c in choices if c["logprobs"] for t in c["logprobs"]["content"]]
        expected = whole["choices"][0]["logprobs"]
        assert tokens == (expected["content"] if expected else [])
    else:
        pieces = [c["text"] for c in choices]
        assert "".join(pieces) == whole["choices"][0]["text"]
        assert [t for c in choices for t in c["logprobs"]["tokens"]] == whole["choices"][0]["logprobs"]["tokens"]
        assert [o for c in choices for o in c["logprobs"]["text_offset"]] == \
            whole["choices"][0]["logprobs"]["text_offset"]
    assert all("\ufffd" not in p for p in pieces) and len([p for p in pieces if p]) > 1
    assert [c["finish_reason"] for c in choices] == [None] * (len(choices) - 1) + [whole["choices"][0]["finish_reason"]]
    assert len({c["id"] for c in chunks}) == 1


def test_the_openai_client_reads_a_stream(served):
    """The official ``openai`` client reads both streams, and a streamed refusal raises as an
    unstreamed one does."""
    import openai
    with openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0) as client:
        messages = [{"role": "user", "content": "Name a colour."}]
        whole = client.chat.completions.create(model=served.model, max_tokens=8, messages=messages)
        stream = client.chat.completions.create(model=served.model, max_tokens=8, messages=messages, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == whole.choices[0].message.content
        text = client.completions.create(model=served.model, prompt="Rules:", max_tokens=6)
        stream = client.completions.create(model=served.model, prompt="Rules:", max_tokens=6, stream=True)
        assert "".join(c.choices[0].text for c in stream) == text.choices[0].text
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model=served.model, max_tokens=10 ** 9, messages=messages, stream=True)


def test_a_stream_stops_writing_when_the_client_goes(served):
    """A client that closes the connection mid-stream frees the model: writing stops at the
    next token, and the next request is answered at once."""
    body = {"model": served.model, "prompt": "Once upon a time", "max_tokens": 250, "stream": True}
    parts = urllib.parse.urlsplit(served.url)
    before = served.student.usage["tokens"]
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        raw = json.dumps(body).encode()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
        received = b""
        while b"data: " not in received:                  # the headers may come apart from the first event
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    start = time.monotonic()
    while served.student.usage["tokens"] == before and time.monotonic() - start < 60:
        time.sleep(0.05)                                             # counted when its writing ends
    assert time.monotonic() - start < 5                              # not after 250 tokens (~15 s)
    assert served.student.usage["tokens"] - before < 40              # its prompt and a few tokens, not 250
    assert served.call("POST", "/completions", {"model": served.model, "prompt": "a", "max_tokens": 1})[0] == 200


@pytest.mark.slow
def test_distill_against_the_served_student_fails_with_a_report_and_stores_nothing(served, monkeypatch, tmp_path):
    """The 135M student is no teacher: ``ldengine distill`` against ``ldengine serve``
    ends with exit code 1 and a report naming the failed checks, without a traceback,
    and stores no function-base version."""
    from ldengine.cli import cli
    monkeypatch.setenv("LDENGINE_FUNCTION_BASE_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["distill", "pursuit", "--teacher-url", served.url, "--teacher-model",
                                      served.model, "--rounds", "1", "--max-tokens", "256"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "check" in result.output.lower()
    assert not list(tmp_path.rglob("provenance.json"))


def test_the_selections_endpoint_answers_the_students_own_choice(served, examples):
    """``POST /v1/ldengine/selections`` returns the in-process student's selection; a request
    without items or with too many options is a 400; /v1/models names the student's layout."""
    _, info = served.call("GET", "/models")
    assert info["data"][0]["selection_layout"] == served.student.layout
    items = [{"prefix": e.prefix, "query": e.query, "options": list(e.options)} for e in examples[:3]]
    status, answer = served.call("POST", "/ldengine/selections", {"model": served.model, "items": items})
    assert status == 200 and answer["object"] == "ldengine.selections"
    for got, e in zip(answer["data"], examples[:3]):
        local = served.student.select(*e.as_tuple()[:3])
        assert got["index"] == local.index
        assert got["probabilities"] == pytest.approx(local.probabilities, abs=1e-6)
    for body in ({"model": served.model, "items": []},
                 {"model": served.model, "items": [{"query": "q", "options": ["o"] * 27}]},
                 {"model": served.model, "items": [{"prefix": "p", "options": ["o"]}]}):
        status, answer = served.call("POST", "/ldengine/selections", body)
        assert status == 400 and answer["error"]["message"], answer


def test_an_adapter_in_the_rows_layout_is_selected_by_the_server(served, examples, pursuit_base):
    """The rows-layout adapter served (the default one): the backend's choices are the server's
    own (/v1/ldengine/selections), equal to the in-process student's with that adapter."""
    from ldengine.models import load_student
    rows = find_adapter("pursuit", pursuit_base)
    student = load_student(adapter=rows)
    assert student.layout == "rows"
    with running(make_server(student, "127.0.0.1", 0, "rows-student")) as server:
        remote = load_openai_student(path=f"openai:{server.url}#rows-student", adapter=rows)
        assert remote.layout == "rows"
        for example in examples[:3]:
            local = student.select(*example.as_tuple()[:3])
            got = remote.select(*example.as_tuple()[:3])
            assert got.index == local.index == example.answer
            assert got.probabilities == pytest.approx(local.probabilities, abs=1e-6)
