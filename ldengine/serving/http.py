"""The HTTP side of ``ldengine serve``, on FastAPI (imported only when an app is made,
so ``ldengine --help`` stays fast); what the endpoints answer is in
``ldengine.serving.endpoints``. HTTP adds:

- With an API key every request must carry ``Authorization: Bearer KEY``, else 401
  before its body is read.
- The body: ``Content-Length`` required (411; chunked bodies are refused), at most
  ``MAX_BODY_BYTES`` (413, from the header alone), all of it within
  ``Limits.body_s`` (408); it must be UTF-8 JSON with Unicode text (400).
- Every answer is JSON, or, for ``"stream": true``, server-sent events of JSON chunks ending
  in ``data: [DONE]`` (``ldengine.serving.stream``). A refusal is an OpenAI-style error ``{"error": {"message",
  "type", "param", "code"}}``, with ``Retry-After`` on 429 and 503; an unexpected
  failure is a 500 with a one-line message (the traceback goes to the log, never to
  the client). A refusal sent before the body was read closes the connection.
"""
# No ``from __future__ import annotations``: FastAPI reads the routes' annotations
# (``request: Request``) as objects, and ``Request`` is imported inside ``create_app``.
import asyncio
import hmac
import json
import logging
import threading
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable

from ldengine.serving.endpoints import SELECTIONS_PATH, chat_completion, completion, model_info, selections
from ldengine.serving.limits import RequestError
from ldengine.serving.model import ServedModel
from ldengine.serving.requests import parse_body, wants_stream
from ldengine.serving.stream import chat_stream, completion_stream

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20     # 1 MiB: far above any selection or chat request of this engine
HEALTH_PATH = "/health"      # a load balancer's or supervisor's probe, as vLLM and TGI answer it
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(model: ServedModel, api_key: str | None = None) -> "FastAPI":
    """The ASGI app answering the API for ``model``; with ``api_key``, only to requests bearing it."""
    from fastapi import FastAPI, Request

    app = FastAPI(title="ldengine serve", docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)

    @app.middleware("http")
    async def guard(request: Request, call_next: "Callable[[Request], Awaitable[Response]]") -> "Response":
        request.scope["path"] = request.scope["path"].rstrip("/") or "/"   # /v1/models/ is /v1/models
        if request.scope["path"] == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return _json({"status": "ok"})      # no key needed, nothing told, no model work
        if api_key is not None and not _authorized(request.headers.get("authorization"), api_key):
            return _error(RequestError("a valid API key is required: send 'Authorization: Bearer KEY'",
                                       status=401, code="invalid_api_key"), close=_has_body(request))
        return await call_next(request)

    @app.get("/v1/models")
    async def models() -> Any:
        return _json({"object": "list", "data": [model_info(model)]})

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str) -> Any:
        if name != model.name:
            return _error(RequestError(f"the model {name!r} does not exist here", status=404,
                                       code="model_not_found"))
        return _json(model_info(model))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await _answer(request, chat_completion, model, chat_stream)

    @app.post("/v1/completions")
    async def complete(request: Request) -> Any:
        return await _answer(request, completion, model, completion_stream)

    @app.post(SELECTIONS_PATH)
    async def select(request: Request) -> Any:
        return await _answer(request, selections, model)

    @app.api_route("/{path:path}", methods=METHODS)
    async def elsewhere(request: Request) -> Any:
        return _error(_no_route(request.method, request.url.path), close=_has_body(request))

    return app


def _has_body(request: "Request") -> bool:
    """Does the request come with a body (which an answer sent without reading it leaves
    on the connection: it is then closed)?"""
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")


def _authorized(header: str | None, api_key: str) -> bool:
    """``Bearer KEY`` exactly: a key padded with spaces is another key."""
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), api_key.encode())


async def _answer(request: "Request", handler: Callable[[dict, ServedModel], dict], model: ServedModel,
                  streamer: Callable[[dict, ServedModel, Callable[[dict], bool]], None] | None = None
                  ) -> "Response":
    """Read the body, then run ``handler`` on a worker thread (the model's passes block), or
    ``streamer`` when the request asks for a stream."""
    from starlette.concurrency import run_in_threadpool

    read = False
    try:
        raw = await _body(request, model.turns.limits.body_s)
        read = True
        body = await run_in_threadpool(parse_body, raw)
        if streamer is not None and wants_stream(body):
            return await _stream(streamer, body, model)
        payload = await run_in_threadpool(lambda: handler(body, model))
    except RequestError as exc:
        return _error(exc, close=not read)
    except Exception as exc:  # a failure is this request's, never the server's
        log.exception("request %s %s failed", request.method, request.url.path)
        return _error(RequestError(f"internal error: {type(exc).__name__}: {str(exc)[:200]}", status=500,
                                   kind="server_error"))
    return _json(payload)


_END = object()           # the last item of a stream's queue
_STREAMING: set = set()   # the streams' worker tasks (the loop keeps only weak references to tasks)


async def _stream(streamer: Callable, body: dict, model: ServedModel) -> "Response":
    """Run ``streamer`` on one worker thread (a request's turns on the model belong to its
    thread) and send what it emits as server-sent events, ``data: [DONE]`` last. A refusal
    before its first event is an ordinary error answer; a failure after it, an ``error``
    event. When the client goes away the writing stops at its next token."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import StreamingResponse

    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    gone = threading.Event()

    def emit(item: object) -> bool:
        loop.call_soon_threadsafe(events.put_nowait, item)
        return not gone.is_set()

    def work() -> None:
        try:
            streamer(body, model, emit)
        except RequestError as exc:
            emit(exc)
        except Exception as exc:  # a failure is this request's, never the server's
            log.exception("streamed request failed")
            emit(RequestError(f"internal error: {type(exc).__name__}: {str(exc)[:200]}", status=500,
                              kind="server_error"))
        finally:
            emit(_END)

    worker = asyncio.ensure_future(run_in_threadpool(work))
    _STREAMING.add(worker)
    worker.add_done_callback(_STREAMING.discard)
    first = await events.get()
    if isinstance(first, RequestError):
        gone.set()
        return _error(first)

    async def sent() -> AsyncIterator[bytes]:
        item = first
        try:
            while item is not _END:
                payload = item.body() if isinstance(item, RequestError) else item
                yield f"data: {json.dumps(payload)}\n\n".encode()
                if isinstance(item, RequestError):
                    return
                item = await events.get()
            yield b"data: [DONE]\n\n"
        finally:
            gone.set()

    return StreamingResponse(sent(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _body(request: "Request", within_s: float) -> bytes:
    """The request body, refused from its headers when too large, and when it does not
    arrive in time (a stalled client must not hold a connection and a worker)."""
    from starlette.requests import ClientDisconnect

    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        raise RequestError("chunked request bodies are not supported; send Content-Length", status=411)
    length = _content_length(request.headers.get("content-length"))
    if length > MAX_BODY_BYTES:
        raise RequestError(f"request body of {length} bytes exceeds {MAX_BODY_BYTES} bytes", status=413)
    try:
        return await asyncio.wait_for(request.body(), within_s)
    except asyncio.TimeoutError:
        raise RequestError(f"the request body did not arrive within {within_s:g} s", status=408,
                           code="request_timeout") from None
    except ClientDisconnect:
        raise RequestError("the client closed the connection before sending its body") from None


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


def _no_route(method: str, path: str) -> RequestError:
    if path in ("/v1/models", "/v1/chat/completions", "/v1/completions") or path.startswith("/v1/models/"):
        return RequestError(f"{method} is not allowed on {path}", status=405)
    return RequestError(f"no such endpoint: {method} {path}", status=404)


def _json(payload: dict, status: int = 200, headers: dict | None = None) -> "Response":
    """A JSON response. ``json.dumps`` as the old server wrote it: a log-probability of
    minus infinity is ``-Infinity``, which Starlette's JSONResponse would refuse."""
    from starlette.responses import Response

    return Response(json.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _error(exc: RequestError, close: bool = False) -> "Response":
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if close:
        headers["Connection"] = "close"
    return _json(exc.body(), exc.status, headers)
