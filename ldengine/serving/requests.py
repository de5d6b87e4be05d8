"""Reading a request: its JSON body, each field checked for type and range, and the
token budgets it must fit, refused with a ``RequestError`` (400, or 404 for a model
not served here) before the model does any work."""
from __future__ import annotations

import json
from typing import Literal, TypeVar, overload

from ldengine.models.base import MAX_OPTIONS
from ldengine.serving.limits import RequestError
from ldengine.serving.model import ServedModel

MAX_TOP_LOGPROBS = 20        # the OpenAI API's own limit
MAX_PROMPTS = 64             # prompts in one /v1/completions request (a top-K is at most 26)
MAX_REQUEST_TOKENS = 65536   # their tokens together, each counted in full (a top-26 selection with echo: about 21k)
MAX_MESSAGES = 256
MAX_STOPS = 4                # as in the OpenAI API
MAX_SELECTIONS = 64          # selections in one request (games in lockstep send one per game)
DEFAULT_MAX_TOKENS = 256

_T = TypeVar("_T")
_U = TypeVar("_U")


def parse_body(raw: bytes) -> dict:
    """The request's JSON object. Refuses bytes that are not UTF-8 and text holding a lone
    surrogate (JSON's ``"\\ud800"`` escape decodes to one; no tokenizer can encode it)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the request body is not UTF-8: {exc}") from None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:    # ValueError: JSON's, or an integer of too many digits
        raise RequestError(f"the request body is not valid JSON: {str(exc).split(';')[0][:200]}") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    _check_text(body)
    return body


def _check_text(body: dict) -> None:
    """Every string of ``body`` (keys too) is Unicode text that encodes to UTF-8."""
    stack: list[tuple[str, object]] = [("", body)]
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


@overload
def get_field(body: dict, name: str, types: type[_T], default: _T, required: bool = False) -> _T: ...
@overload
def get_field(body: dict, name: str, types: type[_T], default: None = None, *,
              required: Literal[True]) -> _T: ...
@overload
def get_field(body: dict, name: str, types: type[_T], default: None = None,
              required: bool = False) -> _T | None: ...
@overload
def get_field(body: dict, name: str, types: tuple[type[_T], type[_U]], default: _T | _U,
              required: bool = False) -> _T | _U: ...
@overload
def get_field(body: dict, name: str, types: tuple[type[_T], type[_U]], default: None = None, *,
              required: Literal[True]) -> _T | _U: ...
@overload
def get_field(body: dict, name: str, types: tuple[type[_T], type[_U]], default: None = None,
              required: bool = False) -> _T | _U | None: ...
def get_field(body: dict, name: str, types: type | tuple, default: object = None,
              required: bool = False) -> object:
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


def ranged_field(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = get_field(body, name, int, default)
    if not low <= value <= high:
        raise RequestError(f"field {name!r} must be between {low} and {high}, got {value}", param=name)
    return value


def stop_strings(body: dict) -> list[str]:
    stop = get_field(body, "stop", (str, list), [])
    stops = [stop] if isinstance(stop, str) else stop
    if len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(f"'stop' must be a non-empty string or a list of at most {MAX_STOPS} of them",
                           param="stop")
    return stops


def common_options(body: dict, model: ServedModel, streamed: bool = False) -> None:
    """The fields every generation request shares: the model, one answer, greedy; ``stream``
    only where the caller answers with a stream (``streamed``)."""
    asked = get_field(body, "model", str, required=True)
    if asked != model.name:
        raise RequestError(f"the model {asked!r} does not exist here; this server serves {model.name!r}",
                           status=404, param="model", code="model_not_found")
    if get_field(body, "stream", bool, False) and not streamed:
        raise RequestError("this endpoint does not stream; send 'stream': false", param="stream")
    if not streamed and body.get("stream_options") is not None:
        raise RequestError("'stream_options' is allowed only with 'stream': true", param="stream_options")
    ranged_field(body, "n", 1, 1, 1)
    # generation here is greedy: a request that asks for sampling is refused, not silently answered greedily
    temperature = get_field(body, "temperature", (int, float))
    if temperature is not None and temperature != 0:
        raise RequestError(f"ldengine serve answers greedily: 'temperature' must be 0 or absent, not {temperature}",
                           param="temperature")
    top_p = get_field(body, "top_p", (int, float))
    if top_p is not None and top_p != 1:
        raise RequestError(f"ldengine serve answers greedily: 'top_p' must be 1 or absent, not {top_p}", param="top_p")


def chat_messages(body: dict) -> list[dict]:
    messages = get_field(body, "messages", list, required=True)
    if not messages or len(messages) > MAX_MESSAGES:
        raise RequestError(f"'messages' must hold 1 to {MAX_MESSAGES} messages", param="messages")
    return [_message(m, i) for i, m in enumerate(messages)]


def _message(message: object, index: int) -> dict:
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


def prompt_list(body: dict) -> list[str]:
    prompt = get_field(body, "prompt", (str, list), required=True)
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not prompts or len(prompts) > MAX_PROMPTS or not all(isinstance(p, str) for p in prompts):
        raise RequestError(f"'prompt' must be a string or a list of 1 to {MAX_PROMPTS} strings "
                           "(token-id prompts are not supported)", param="prompt")
    return prompts


def wants_stream(body: dict) -> bool:
    """Does the request ask for its answer as a stream of server-sent events?"""
    return bool(get_field(body, "stream", bool, False))


def stream_usage(body: dict) -> bool:
    """``stream_options.include_usage``: a last event carrying the usage."""
    options = get_field(body, "stream_options", dict, {})
    unknown = sorted(set(options) - {"include_usage"})
    if unknown:
        raise RequestError(f"unknown stream option {unknown[0]!r} (known: include_usage)", param="stream_options")
    value = options.get("include_usage", False)
    if not isinstance(value, bool):
        raise RequestError("'stream_options.include_usage' must be true or false", param="stream_options")
    return value


def max_tokens_asked(body: dict, model: ServedModel, low: int = 1) -> int:
    """``max_completion_tokens``, else ``max_tokens``: at most the model's context."""
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    return ranged_field(body, key, DEFAULT_MAX_TOKENS, low, model.context_length)


def selection_items(body: dict) -> list[tuple[str, str, list[str]]]:
    """(prefix, query, options) of each selection asked for."""
    items = get_field(body, "items", list, required=True)
    if not items or len(items) > MAX_SELECTIONS:
        raise RequestError(f"items must hold 1 to {MAX_SELECTIONS} selections", param="items")
    parsed = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestError(f"items[{i}] must be an object", param="items")
        prefix, query = get_field(item, "prefix", str, ""), get_field(item, "query", str, required=True)
        options = get_field(item, "options", list, required=True)
        if not options or len(options) > MAX_OPTIONS or not all(isinstance(o, str) for o in options):
            raise RequestError(f"items[{i}].options must be 1 to {MAX_OPTIONS} strings", param="items")
        parsed.append((prefix, query, list(options)))
    return parsed


def check_length(model: ServedModel, ids: list[int], max_tokens: int) -> None:
    """The prompt is not empty, and it fits the model's context with the tokens asked for."""
    if not ids:
        raise RequestError("the prompt is empty", param="prompt")
    if len(ids) + max_tokens > model.context_length:
        raise RequestError(f"the prompt ({len(ids)} tokens) plus max_tokens ({max_tokens}) exceeds "
                           f"the model's context of {model.context_length} tokens",
                           code="context_length_exceeded")


def check_prompt_tokens(rows: list[list[int]]) -> None:
    """The prompts of one request hold at most ``MAX_REQUEST_TOKENS`` tokens together."""
    if sum(len(r) for r in rows) > MAX_REQUEST_TOKENS:
        raise RequestError(f"the prompts hold {sum(len(r) for r in rows)} tokens; one request may hold "
                           f"at most {MAX_REQUEST_TOKENS}", param="prompt")


def check_budget(model: ServedModel, read: int, written: int) -> None:
    """Refuse up front a request that would need more tokens than one request may have."""
    limits = model.turns.limits
    if read > limits.read_tokens or written > limits.written_tokens:
        raise RequestError(
            f"over the request budget: the model would read {read} tokens and write up to {written}; "
            f"one request may read at most {limits.read_tokens} and write at most {limits.written_tokens} "
            "(a list's common beginning is read once; max_tokens counts once per prompt); "
            "split the request", code="request_budget_exceeded")
