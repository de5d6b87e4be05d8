"""``ldengine serve`` and the ``openai`` student backend, with the real parts: the
SmolLM2 student with the committed pursuit LD adapter behind a real HTTP server on
an ephemeral localhost port, and the backend scoring selections through it."""
from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from ldengine.errors import LDEngineError
from ldengine.ld import (RetrieverProvider, StudentSelector, find_adapter, selection_examples,
                         stage_inputs)
from ldengine.models.openai_student import load_openai_student, parse_address, scoring_prompts
from ldengine.serve import MAX_BODY_BYTES, default_model_name, make_server, serve_command


@dataclass
class Served:
    url: str        # http://127.0.0.1:PORT/v1
    model: str
    student: Any    # the in-process student the server answers with
    adapter: Any

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict | None = None) -> tuple[int, dict]:
        """One request on a fresh connection: (status, JSON answer)."""
        parts = urllib.parse.urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            connection.request(method, parts.path + path, body=data,
                               headers={"Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def served(pursuit_base):
    """The real student and adapter served from a thread; the same student object answers
    in-process in the comparisons (the tests never use both at once)."""
    from ldengine.models import load_student
    adapter = find_adapter("pursuit", pursuit_base)
    student = load_student(adapter=adapter)
    server = make_server(student, "127.0.0.1", 0, default_model_name(student, adapter))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(server.url, server.model.name, student, adapter)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


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
    choice per prompt of a list; `` Yes`` minus `` No`` is highest after the right candidate."""
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
    margins = [y - n for y, n in zip(yes, no)]
    assert margins.index(max(margins)) == example.answer


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


def test_long_and_unrelated_prompts_are_scored_as_one_pass_scores_them(served, examples):
    """It scores prompts longer than a chunk, and prompts with nothing in common, as one
    plain forward pass over each prompt does (within 1e-3)."""
    import torch
    from ldengine.serve import CHUNK_TOKENS
    long_text = examples[0].prefix * 3 + examples[0].query
    prompts = [long_text, "Name a colour:"]
    status, echoed = served.call("POST", "/completions", {"model": served.model, "prompt": prompts,
                                                          "max_tokens": 0, "echo": True, "logprobs": 0})
    assert status == 200
    tokenizer, model = served.student.tokenizer, served.student.model
    for prompt, choice in zip(prompts, echoed["choices"]):
        ids = tokenizer(prompt)["input_ids"]
        with torch.inference_mode():
            logprobs = model(input_ids=torch.tensor([ids])).logits[0].double().log_softmax(-1)
        expected = [float(logprobs[t - 1, i]) for t, i in enumerate(ids) if t]
        assert choice["logprobs"]["token_logprobs"][1:] == pytest.approx(expected, abs=1e-3)
    assert len(tokenizer(long_text)["input_ids"]) > CHUNK_TOKENS


def test_prompt_tails_run_in_bounded_groups():
    """It groups prompt tails so a pass holds at most TAIL_TOKENS padded tokens, a longer tail alone."""
    from ldengine.serve import TAIL_TOKENS, _groups
    tails = [[1] * 10] * 150 + [[2] * (TAIL_TOKENS + 5)] + [[3] * 3]
    groups = _groups(tails)
    assert [t for g in groups for t in g] == tails
    assert all(len(g) * max(map(len, g)) <= TAIL_TOKENS or len(g) == 1 for g in groups)


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
    ("streaming", "POST", "/chat/completions", {"stream": True}, 400),
    ("two answers", "POST", "/chat/completions", {"n": 2}, 400),
    ("no model", "POST", "/chat/completions", {"model": DROP}, 400),
    ("an unknown model", "POST", "/chat/completions", {"model": "gpt-9"}, 404),
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
    assert head.startswith(b"HTTP/1.1 413") and b"Connection: close" in head
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


# ---- the openai student backend --------------------------------------------------


def test_the_backend_selects_as_the_in_process_student(served, examples):
    """It makes the in-process student's choice on real selections, with its probabilities
    (within 1e-3), scoring Yes minus No from the server's log-probabilities."""
    remote = load_openai_student(path=f"openai:{served.url}#{served.model}", adapter=served.adapter)
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
                          StudentSelector(pursuit_task, student))
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
    from plugins import openai_student
    registered: list = []
    openai_student.ldengine_register_students(lambda *args: registered.append(args))
    assert [(name, loader) for name, loader, _ in registered] == [("openai", load_openai_student)]


def test_the_serve_command_documents_its_options():
    """It describes itself and its options in --help (and loads no model to do so)."""
    result = CliRunner().invoke(serve_command, ["--help"], catch_exceptions=False)
    assert result.exit_code == 0
    for option in ("--adapter", "--student", "--host", "--port", "--model-name", "127.0.0.1", "8000"):
        assert option in result.output


def test_the_openai_client_talks_to_the_server(served):
    """It answers the official ``openai`` Python client (models, chat with logprobs, completions)."""
    import openai   # the dev extra installs it: the test proves the API is the one clients expect
    with openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0) as client:
        assert [m.id for m in client.models.list()] == [served.model]
        reply = client.chat.completions.create(model=served.model, max_tokens=4, logprobs=True, top_logprobs=2,
                                               messages=[{"role": "user", "content": "Name a colour."}])
        assert reply.choices[0].message.content and len(reply.choices[0].logprobs.content[0].top_logprobs) == 2
        text = client.completions.create(model=served.model, prompt="Rules:", max_tokens=1, logprobs=5)
        assert len(text.choices[0].logprobs.top_logprobs[0]) == 5
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])


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
