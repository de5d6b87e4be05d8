"""``ldengine serve``: the local student behind an OpenAI-compatible HTTP API.

The command loads the student and runs the server of ``ldengine.serving``; with an
API key (``--api-key`` or ``$LDENGINE_API_KEY``) every request must carry it, and
without one the server binds only a loopback address.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ldengine.errors import LDEngineError
from ldengine.models.loading import chosen_device, load_student
from ldengine.serving.limits import Limits
from ldengine.serving.server import API_KEY_ENV, is_loopback, make_server

if TYPE_CHECKING:
    from ldengine.contracts import Student


def default_model_name(student: Student, adapter: str | None) -> str:
    """The student's name, or the adapter folder's name when one is applied."""
    return Path(adapter).name if adapter else student.name


@click.command()
@click.option("--student", type=click.Path(exists=True),
              help="Student model: a .gguf file or a local HF model folder (default: SmolLM2-135M-Instruct).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False),
              help="LoRA adapter folder to apply (ldengine adapters list --task TASK shows them, with their paths).")
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
@click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True, max=3600), default=Limits.header_s,
              show_default=True, help="Seconds a request's line and headers may take to arrive, from the connection "
                                      "opening or its previous answer (then the connection is closed).")
@click.option("--max-connections", type=click.IntRange(1, 60000), default=Limits.connections, show_default=True,
              help="Connections open at once; a newcomer beyond it closes the one waiting longest for its "
                   "headers (or is closed itself when all are inside a request).")
@click.option("--max-connections-per-client", type=click.IntRange(1, 60000), default=Limits.per_client,
              show_default=True, help="Connections open at once from one client address (the same rule among them).")
def serve_command(student: str | None, adapter: str | None, host: str, port: int, api_key: str | None,
                  model_name: str | None, dtype: str, device: str, max_read_tokens: int, max_written_tokens: int,
                  request_timeout: float, queue_timeout: float, max_requests: int, body_timeout: float,
                  header_timeout: float, max_connections: int, max_connections_per_client: int) -> None:
    """Serve the student over an OpenAI-compatible HTTP API.

    GET /v1/models, POST /v1/chat/completions and POST /v1/completions, greedy,
    with log-probabilities. The `openai` student backend plays against it:
    `ldengine run TASK --backend openai` with LDENGINE_STUDENT_URL set to
    openai:http://HOST:PORT/v1#MODEL (or nothing: the default port here) and, when
    the server has a key, LDENGINE_STUDENT_KEY set to it; serve the adapter the run
    uses (`--adapter`), or the backend refuses to play.
    """
    if not api_key and not is_loopback(host):    # before minutes of loading, not after
        raise click.ClickException(f"refusing to serve on {host} without an API key "
                                   f"(--api-key or ${API_KEY_ENV}); or bind 127.0.0.1")
    limits = Limits(max_read_tokens, max_written_tokens, request_timeout, queue_timeout, max_requests, body_timeout,
                    header_timeout, max_connections, max_connections_per_client)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loaded = load_student(path=student, adapter=adapter, dtype=None if dtype == "float32" else dtype,
                          device=chosen_device(device))
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
