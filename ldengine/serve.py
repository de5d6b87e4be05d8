"""``ldengine serve``: the local student behind an OpenAI-compatible HTTP API.

This module is the HTTP side, on FastAPI and uvicorn (imported only when a server
is made, so ``ldengine --help`` stays fast); what the endpoints mean, the model's
schedule and the request budgets are in ``ldengine.serving``. HTTP adds:

- With an API key (``--api-key`` or ``$LDENGINE_API_KEY``) every request must carry
  ``Authorization: Bearer KEY``, else 401 before its body is read. Without a key the
  server binds only a loopback address.
- The body: ``Content-Length`` required (411; chunked bodies are refused), at most
  ``MAX_BODY_BYTES`` (413, from the header alone), all of it within
  ``Limits.body_s`` (408); it must be UTF-8 JSON with Unicode text (400).
- Every answer is JSON. A refusal is an OpenAI-style error ``{"error": {"message",
  "type", "param", "code"}}``, with ``Retry-After`` on 429 and 503; an unexpected
  failure is a 500 with a one-line message (the traceback goes to the log, never to
  the client). A refusal sent before the body was read closes the connection.
"""
# No ``from __future__ import annotations``: FastAPI reads the routes' annotations
# (``request: Request``) as objects, and ``Request`` is imported inside ``create_app``.
import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import threading
from pathlib import Path
from typing import Any, Callable

import click

from ldengine.errors import LDEngineError
from ldengine.serving import (MAX_BODY_BYTES, SELECTIONS_PATH, Limits, RequestError, ServedModel, chat_completion,
                              completion, parse_body, selections)

log = logging.getLogger(__name__)

API_KEY_ENV = "LDENGINE_API_KEY"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def is_loopback(host: str) -> bool:
    """Only this machine can reach ``host`` (a name other than localhost counts as not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(model: ServedModel, api_key: str | None = None) -> Any:
    """The ASGI app answering the API for ``model``; with ``api_key``, only to requests bearing it."""
    from fastapi import FastAPI, Request

    app = FastAPI(title="ldengine serve", docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable) -> Any:
        request.scope["path"] = request.scope["path"].rstrip("/") or "/"   # /v1/models/ is /v1/models
        if api_key is not None and not _authorized(request.headers.get("authorization"), api_key):
            return _error(RequestError("a valid API key is required: send 'Authorization: Bearer KEY'",
                                       status=401, code="invalid_api_key"), close=_has_body(request))
        return await call_next(request)

    @app.get("/v1/models")
    async def models() -> Any:
        return _json({"object": "list", "data": [model.info()]})

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str) -> Any:
        if name != model.name:
            return _error(RequestError(f"the model {name!r} does not exist here", status=404,
                                       code="model_not_found"))
        return _json(model.info())

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await _answer(request, chat_completion, model)

    @app.post("/v1/completions")
    async def complete(request: Request) -> Any:
        return await _answer(request, completion, model)

    @app.post(SELECTIONS_PATH)
    async def select(request: Request) -> Any:
        return await _answer(request, selections, model)

    @app.api_route("/{path:path}", methods=METHODS)
    async def elsewhere(request: Request) -> Any:
        return _error(_no_route(request.method, request.url.path), close=_has_body(request))

    return app


def _has_body(request: Any) -> bool:
    """Does the request come with a body (which an answer sent without reading it leaves
    on the connection: it is then closed)?"""
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0")


def _authorized(header: str | None, api_key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


async def _answer(request: Any, handler: Callable[[dict, ServedModel], dict], model: ServedModel) -> Any:
    """Read the body, then run ``handler`` on a worker thread (the model's passes block)."""
    from starlette.concurrency import run_in_threadpool

    read = False
    try:
        raw = await _body(request, model.turns.limits.body_s)
        read = True
        payload = await run_in_threadpool(lambda: handler(parse_body(raw), model))
    except RequestError as exc:
        return _error(exc, close=not read)
    except Exception as exc:  # a failure is this request's, never the server's
        log.exception("request %s %s failed", request.method, request.url.path)
        return _error(RequestError(f"internal error: {type(exc).__name__}: {str(exc)[:200]}", status=500,
                                   kind="server_error"))
    return _json(payload)


async def _body(request: Any, within_s: float) -> bytes:
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


def _json(payload: dict, status: int = 200, headers: dict | None = None) -> Any:
    """A JSON response. ``json.dumps`` as the old server wrote it: a log-probability of
    minus infinity is ``-Infinity``, which Starlette's JSONResponse would refuse."""
    from starlette.responses import Response

    return Response(json.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _error(exc: RequestError, close: bool = False) -> Any:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if close:
        headers["Connection"] = "close"
    return _json(exc.body(), exc.status, headers)


class StudentServer:
    """uvicorn serving the API on a socket bound when the server is made (port 0: the
    port is known at once); ``serve_forever()`` runs it, ``shutdown()`` from another
    thread stops it, ``server_close()`` frees the socket."""

    def __init__(self, model: ServedModel, sock: socket.socket, api_key: str | None):
        import uvicorn

        self.model, self.socket = model, sock
        config = uvicorn.Config(create_app(model, api_key), lifespan="off", log_config=None,
                                timeout_keep_alive=5, timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._running, self._stopped = threading.Event(), threading.Event()

    def serve_forever(self) -> None:
        self._running.set()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving (in-flight requests get up to 5 s) and wait until it has."""
        self._server.should_exit = True
        if self._running.is_set():
            self._stopped.wait(30)

    def server_close(self) -> None:
        self.socket.close()

    @property
    def url(self) -> str:
        """The API's base URL (``.../v1``), with the port actually bound."""
        host, port = self.socket.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/v1"


def make_server(student: Any, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
                api_key: str | None = None, limits: Limits | None = None) -> StudentServer:
    """A server for ``student`` bound to ``host:port`` (port 0: any free port); call
    ``serve_forever()`` on it (and ``shutdown()`` from another thread to stop). Without
    ``api_key`` it binds only a loopback address."""
    if not api_key and not is_loopback(host):
        raise LDEngineError(f"refusing to serve on {host} without an API key: anyone who can reach it could "
                            f"use the model; set --api-key or ${API_KEY_ENV}, or bind 127.0.0.1")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host.strip("[]"), port), family=family)
    except OSError as exc:
        raise LDEngineError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return StudentServer(ServedModel(student, model_name or student.name, limits), sock, api_key or None)


def default_model_name(student: Any, adapter: str | None) -> str:
    """The student's name, or the adapter folder's name when one is applied."""
    return Path(adapter).name if adapter else student.name


@click.command()
@click.option("--student", type=click.Path(exists=True),
              help="Student model: a .gguf file or a local HF model folder (default: SmolLM2-135M-Instruct).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False),
              help="LoRA adapter folder to apply (e.g. the pursuit LD adapter under function_base/pursuit/adapters/).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Any but a loopback address needs an API key.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--api-key", envvar=API_KEY_ENV, show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every request (prefer the environment variable: "
                   "a command line is visible to other users).")
@click.option("--model-name", help="Model id clients ask for (default: the adapter folder's name, else the student's).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
              show_default=True, help="Type the student runs in.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the student runs. auto: the GPU when torch sees one, else the CPU.")
@click.option("--max-read-tokens", type=click.IntRange(1), default=Limits.read_tokens, show_default=True,
              help="Tokens the model may read for one request (a prompt list's common beginning once).")
@click.option("--max-written-tokens", type=click.IntRange(1), default=Limits.written_tokens, show_default=True,
              help="Tokens it may write for one request (max_tokens x prompts).")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=Limits.request_s,
              show_default=True, help="Seconds one request may take; then it is stopped (503).")
@click.option("--queue-timeout", type=click.FloatRange(min=0, min_open=True), default=Limits.queue_s,
              show_default=True, help="Seconds a request may wait for its first turn on the model (then 503).")
@click.option("--max-requests", type=click.IntRange(1), default=Limits.requests, show_default=True,
              help="Requests taking turns on the model at once; more get 429.")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=Limits.body_s,
              show_default=True, help="Seconds a request's body may take to arrive (then 408).")
def serve_command(student: str | None, adapter: str | None, host: str, port: int, api_key: str | None,
                  model_name: str | None, dtype: str, device: str, max_read_tokens: int, max_written_tokens: int,
                  request_timeout: float, queue_timeout: float, max_requests: int, body_timeout: float) -> None:
    """Serve the student over an OpenAI-compatible HTTP API.

    GET /v1/models, POST /v1/chat/completions and POST /v1/completions, greedy,
    with log-probabilities. The `openai` student backend plays against it:
    `ldengine run pursuit --backend openai` with LDENGINE_STUDENT_URL set to
    openai:http://HOST:PORT/v1#MODEL (or nothing: the default port here) and, when
    the server has a key, LDENGINE_STUDENT_KEY set to it; serve the adapter the run
    uses (`--adapter`), or the backend refuses to play.
    """
    from ldengine.cli import _device
    from ldengine.models import load_student

    if not api_key and not is_loopback(host):    # before minutes of loading, not after
        raise click.ClickException(f"refusing to serve on {host} without an API key "
                                   f"(--api-key or ${API_KEY_ENV}); or bind 127.0.0.1")
    limits = Limits(max_read_tokens, max_written_tokens, request_timeout, queue_timeout, max_requests, body_timeout)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loaded = load_student(path=student, adapter=adapter, dtype=None if dtype == "float32" else dtype,
                          device=_device(device))
    try:
        server = make_server(loaded, host, port, model_name or default_model_name(loaded, adapter), api_key, limits)
    except LDEngineError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"serving {server.model.name} at {server.url}{' (API key required)' if api_key else ''} "
               "(Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:   # uvicorn stops on Ctrl-C, then raises it again
        pass
    finally:
        server.server_close()
