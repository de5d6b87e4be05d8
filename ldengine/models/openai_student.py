"""The ``openai`` student backend: selection scored by an OpenAI-compatible server.

It scores the K candidates exactly as ``TransformersStudent`` does, only over
HTTP. Candidate i's text is ``prefix + selection_context(query) +
option_row(option_i)``; the in-process score is the logit of `` Yes`` minus that
of `` No`` for the next token, and the K scores are softmaxed. Here the texts
``T_i + " Yes"`` and ``T_i + " No"`` (2K prompts, one request) go to ``POST
{url}/completions`` with ``echo: true, max_tokens: 0, logprobs: 0``; the server
answers each prompt token's log-probability, and log p(Yes | T_i) - log p(No |
T_i) equals the logit difference (the log-softmax normaliser cancels). Asking
for the next token's top 20 instead would not do: after the fine-tuned adapter
`` No`` is often not among them. Pointed at ``ldengine serve`` with the same
base model and adapter it makes the same choices as in-process, and it checks
that: the server reports its weights' hashes in ``/v1/models``.

A student whose adapter reads selections in the ``rows`` layout (each candidate read
apart after the prefix, then the query once: ``TransformersStudent._rows_scores``)
cannot be scored through text prompts; ``ldengine serve`` says so in ``/v1/models``
(``selection_layout``) and then selects itself at ``POST /v1/ldengine/selections``,
which this backend uses: the same computation as in-process, on the server.

Writing (``generate``) goes through chat completions and is greedy only.
Standard library only (``urllib``).

Address: ``openai:http://HOST:PORT/v1#MODEL`` (``openai:`` and ``#MODEL`` may be
left out: without a model the server's only model is used), from the loader's
``path``, else ``$LDENGINE_STUDENT_URL``, else ``http://127.0.0.1:8000/v1``.
The API key, if the server wants one, is read from ``$LDENGINE_STUDENT_KEY``.
"""
from __future__ import annotations

import http.client
import json
import logging
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Callable, TypeVar

from ldengine.cache import LRU, Memoised
from ldengine.contracts import Selection
from ldengine.errors import LDEngineError
from ldengine.models.base import NO, YES, check_options, option_row, selection_context
from ldengine.models.lora import read_manifest

log = logging.getLogger(__name__)

URL_ENV, KEY_ENV = "LDENGINE_STUDENT_URL", "LDENGINE_STUDENT_KEY"
DEFAULT_URL = "http://127.0.0.1:8000/v1"
MEMO_SIZE = 4096       # selections remembered by prompt, as the in-process student does
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
T = TypeVar("T")


def parse_address(address: str) -> tuple[str, str | None]:
    """(base URL without a trailing slash, model id or None) from ``openai:URL#MODEL``."""
    text = address[len("openai:"):] if address.startswith("openai:") else address
    url, _, model = text.partition("#")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LDEngineError(f"an openai student address looks like openai:http://127.0.0.1:8000/v1#MODEL, "
                            f"got {address!r}")
    return url.rstrip("/"), urllib.parse.unquote(model) or None


def scoring_prompts(prefix: str, query: str, options: list[str]) -> list[str]:
    """The K texts scored, one per candidate: the tokens the in-process student reads
    for that candidate (its prefix, context and row are encoded apart there; they
    meet at newlines, where the tokenizer splits anyway, so the whole text encodes
    to the same tokens)."""
    check_options(options)
    context = prefix + selection_context(query)
    return [context + option_row(o) for o in options]


class OpenAIStudent(Memoised):
    """A student whose selections (and greedy writing) come from an OpenAI-compatible server."""

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None,
                 timeout_s: float = 300.0, memo_size: int = MEMO_SIZE):
        self.url, self.api_key, self.timeout_s = url.rstrip("/"), api_key, timeout_s
        self._opener = _opener(self.url)
        info = self._model_info(model)
        self.name: str = _field(info, "id", str)
        self.model_hash: str = info.get("model_hash") or f"{self.url}#{self.name}"
        self.adapter_hash: str | None = info.get("adapter_hash")
        self.dtype: str = info.get("dtype") or "unknown"
        self.served = info        # what the server says about its weights
        # An ``ldengine serve`` says how its student reads selections and where it selects; the
        # ``rows`` layout cannot be expressed as text prompts, so the server selects then.
        self.layout: str = info.get("selection_layout") or "joint"
        selections = str(info.get("selections") or "") if self.layout != "joint" else ""
        # the server names the path from its root; requests go to self.url, which ends in /v1
        self._selections = selections[len("/v1"):] if selections.startswith("/v1/") else selections or None
        self._memo = LRU(memo_size)
        self.usage: Counter = Counter()  # model_calls (requests), tokens (read or written)

    # ---- selection -------------------------------------------------------------

    def select(self, prefix: str, query: str, options: list[str]) -> Selection:
        """Pick one of ``options``; its probabilities sum to 1."""
        return self.select_batch([(prefix, query, options)])[0]

    def select_batch(self, items: list[tuple[str, str, list[str]]]) -> list[Selection]:
        """Select for several decisions; a prompt seen before is answered from the memo
        (the served weights cannot change under one client: their hash was checked)."""
        for _, _, options in items:
            check_options(options)
        results = []
        for prefix, query, options in items:
            key = (prefix, query, tuple(options))
            selection = self._memo.get(key)
            if selection is None:
                selection = (self._served_selection(prefix, query, options) if self._selections
                             else _selection(self._scores(prefix, query, options)))
                self._memo.put(key, selection)
            results.append(selection)
        return results

    def _served_selection(self, prefix: str, query: str, options: list[str]) -> Selection:
        """The server's own selection (``POST /v1/ldengine/selections``), for a served student
        whose layout text prompts cannot express."""
        reply = self._post(str(self._selections), {"model": self.name,
                                  "items": [{"prefix": prefix, "query": query, "options": options}]})
        data = _field(reply, "data", list)
        if len(data) != 1 or not isinstance(data[0], dict):
            raise LDEngineError("the student server answered no selection")
        index, probabilities = data[0].get("index"), data[0].get("probabilities")
        if (not isinstance(index, int) or not isinstance(probabilities, list) or len(probabilities) != len(options)
                or not 0 <= index < len(options)):
            raise LDEngineError("the student server's selection does not fit the candidates it was sent")
        return Selection(index=index, probabilities=[float(p) for p in probabilities])

    def _scores(self, prefix: str, query: str, options: list[str]) -> list[float]:
        """log p(Yes) - log p(No) after each candidate's text, from one request."""
        prompts = [text + answer for text in scoring_prompts(prefix, query, options) for answer in (YES, NO)]
        reply = self._post("/completions", {"model": self.name, "prompt": prompts, "max_tokens": 0,
                                            "echo": True, "logprobs": 0, "temperature": 0})
        choices = sorted(_field(reply, "choices", list), key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts):
            raise LDEngineError(f"the student server answered {len(choices)} choices for {len(prompts)} prompts")
        last = [_last_logprob(c, answer) for c, answer in zip(choices, [YES, NO] * len(options))]
        return [yes - no for yes, no in zip(last[::2], last[1::2])]

    # ---- writing ---------------------------------------------------------------

    def generate(self, prompt: str, max_new_tokens: int = 256, temperature: float = 0.0,
                 seed: int = 0, num_return_sequences: int = 1, chat: bool = True) -> list[str]:
        """Greedy text for ``prompt`` (copies for ``num_return_sequences``, as in-process)."""
        _greedy_only(temperature)
        return [self._write(prompt, max_new_tokens, chat, None)] * num_return_sequences

    def generate_batch(self, prompts: list[str], prefix: str = "", max_new_tokens: int = 48,
                       stop: Callable[[str], bool] | None = None, chat: bool = True,
                       temperature: float = 0.0, seed: int = 0) -> list[str]:
        """Greedy answers to ``prefix + prompt``, one request each; ``stop(answer_so_far)``
        is applied token by token here, as the in-process student applies it."""
        _greedy_only(temperature)
        return [self._write(prefix + p, max_new_tokens, chat, stop) for p in prompts]

    def _write(self, text: str, max_tokens: int, chat: bool, stop: Callable[[str], bool] | None) -> str:
        body: dict[str, object] = {"model": self.name, "max_tokens": max_tokens, "temperature": 0}
        if chat:
            body.update(messages=[{"role": "user", "content": text}], logprobs=stop is not None)
            choice = _first_choice(self._post("/chat/completions", body))
            answer = _field(_field(choice, "message", dict), "content", str)
            tokens = [bytes(t["bytes"]) if t.get("bytes") else str(t.get("token", "")).encode()
                      for t in (choice.get("logprobs") or {}).get("content") or []]
        else:
            body.update(prompt=text, logprobs=0 if stop is not None else None)
            choice = _first_choice(self._post("/completions", body))
            answer = _field(choice, "text", str)
            tokens = [str(t).encode() for t in (choice.get("logprobs") or {}).get("tokens") or []]
        return _until(tokens, stop) if stop is not None else answer

    # ---- HTTP ----------------------------------------------------------------

    def _model_info(self, model: str | None) -> dict:
        """The served model's entry in ``/v1/models`` (the only one when none is named)."""
        entries = [m for m in _field(self._request("GET", "/models"), "data", list) if isinstance(m, dict)]
        if model is None:
            if len(entries) != 1:
                names = ", ".join(str(m.get("id")) for m in entries) or "none"
                raise LDEngineError(f"the student server at {self.url} serves {names}; name one: "
                                    f"openai:{self.url}#MODEL")
            return entries[0]
        for entry in entries:
            if entry.get("id") == model:
                return entry
        if entries:
            names = ", ".join(str(m.get("id")) for m in entries)
            raise LDEngineError(f"the student server at {self.url} serves {names}, not {model!r}")
        return {"id": model}   # a server that lists no models: its answers will say if it is wrong

    def _post(self, path: str, body: dict) -> dict:
        reply = self._request("POST", path, {k: v for k, v in body.items() if v is not None})
        usage = reply.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        self.usage["model_calls"] += 1
        self.usage["tokens"] += int(usage.get("total_tokens") or 0)
        return reply

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                reply = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise LDEngineError(f"the student server answered HTTP {exc.code} to {method} {path}: "
                                f"{_error_message(exc)}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LDEngineError(f"cannot reach the student server at {self.url} ({reason}); "
                                f"start one with `ldengine serve`") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise LDEngineError(f"the student server at {self.url} did not answer JSON to {path}") from None
        if not isinstance(reply, dict):
            raise LDEngineError(f"the student server's answer to {path} is not a JSON object")
        return reply


def _opener(url: str) -> urllib.request.OpenerDirector:
    """No proxy for a server on this machine (a proxy from the environment would
    otherwise receive requests meant for 127.0.0.1)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
    return urllib.request.build_opener(*handlers)


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read().decode("utf-8"))["error"]["message"])[:300]
    except Exception:  # not the OpenAI error shape: the status line says enough
        return str(exc.reason)


def _field(data: object, name: str, kind: type[T]) -> T:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise LDEngineError(f"the student server's answer has no {name!r} ({kind.__name__})")
    return value


def _first_choice(reply: dict) -> dict:
    choices = _field(reply, "choices", list)
    if not choices or not isinstance(choices[0], dict):
        raise LDEngineError("the student server answered no choices")
    return choices[0]


def _last_logprob(choice: dict, answer: str) -> float:
    """The echoed prompt's last token's log-probability; that token must be ``answer``
    (else the server's tokenizer is not the student's and the score would be another's)."""
    logprobs = _field(choice, "logprobs", dict)
    tokens, values = _field(logprobs, "tokens", list), _field(logprobs, "token_logprobs", list)
    if not tokens or tokens[-1] != answer or not isinstance(values[-1], (int, float)):
        raise LDEngineError(f"the student server did not score {answer!r} as one echoed token "
                            "(it needs `echo` with `logprobs` on /v1/completions, and a tokenizer "
                            f"with {answer!r} as one token)")
    return float(values[-1])


def _selection(scores: list[float]) -> Selection:
    """Softmax over the K scores in float64; the first best index wins ties, as torch's argmax."""
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = sum(weights)
    probabilities = [w / total for w in weights]
    return Selection(index=scores.index(top), probabilities=probabilities)


def _until(tokens: list[bytes], stop: Callable[[str], bool]) -> str:
    """The answer up to the first token after which ``stop`` holds (that token included),
    decoded from the tokens' bytes as the in-process student decodes its answer so far."""
    answer, text = b"", ""
    for token in tokens:
        answer += token
        text = answer.decode("utf-8", "replace")
        if stop(text):
            break
    return text


def _greedy_only(temperature: float) -> None:
    if temperature > 0:
        raise LDEngineError("the openai student backend writes greedily only (temperature 0)")


def _served_adapter_check(student: OpenAIStudent, adapter: str | Path | None) -> None:
    """Refuse to play when the server's adapter is not the one this run asked for:
    its selections would be another model's."""

    wanted = read_manifest(Path(adapter)).get("adapter_hash") if adapter is not None else None
    if "adapter_hash" not in student.served or (adapter is not None and wanted is None):
        if adapter is not None:
            log.warning("cannot check that the student server at %s serves the adapter %s "
                        "(no adapter hash on one side); assuming it does", student.url, adapter)
        return
    if wanted != student.adapter_hash:
        need = f"`ldengine serve --adapter {adapter}`" if adapter is not None else "`ldengine serve` without --adapter"
        raise LDEngineError(f"the student server at {student.url} serves adapter "
                            f"{(student.adapter_hash or 'none')[:12]}, but this run uses "
                            f"{(wanted or 'none')[:12]}; start it with {need}")


def _served_layout_check(student: OpenAIStudent, adapter: str | Path | None) -> None:
    """Refuse an adapter that reads selections in a layout the server cannot score."""

    layout = read_manifest(Path(adapter)).get("selection_layout", "joint") if adapter is not None else "joint"
    if layout != "joint" and not student._selections:
        raise LDEngineError(f"the adapter {adapter} reads selections in the {layout!r} layout, which text "
                            f"prompts cannot express; the server at {student.url} does not select itself "
                            "(POST /v1/ldengine/selections): serve it with `ldengine serve`")


def load_openai_student(path: str | Path | None = None, adapter: str | Path | None = None,
                        dtype: str | None = None, **_: object) -> OpenAIStudent:
    """The ``openai`` backend's loader (``ldengine_register_students``): ``path`` is the
    address (``openai:URL#MODEL``); ``adapter`` and ``dtype`` are what the server must
    serve, checked against what it reports."""
    address = str(path) if path is not None else os.environ.get(URL_ENV) or DEFAULT_URL
    url, model = parse_address(address)
    student = OpenAIStudent(url, model, api_key=os.environ.get(KEY_ENV))
    _served_adapter_check(student, adapter)
    _served_layout_check(student, adapter)
    if dtype and dtype != "auto" and student.dtype not in (dtype, "unknown"):
        raise LDEngineError(f"the student server runs in {student.dtype}, this run asked for {dtype}; "
                            f"start it with `ldengine serve --dtype {dtype}`")
    return student
