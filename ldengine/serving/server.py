"""The server: uvicorn running the HTTP app on a socket it binds itself, refusing to
listen beyond this machine without an API key. uvicorn is imported when a server is
made, so ``ldengine --help`` stays fast."""
from __future__ import annotations

import ipaddress
import socket
import threading
from typing import TYPE_CHECKING

from ldengine.errors import LDEngineError
from ldengine.serving.guard import guarded_protocol
from ldengine.serving.http import create_app
from ldengine.serving.limits import Limits
from ldengine.serving.model import ServedModel

if TYPE_CHECKING:
    from ldengine.models.student import TransformersStudent

API_KEY_ENV = "LDENGINE_API_KEY"


def is_loopback(host: str) -> bool:
    """Only this machine can reach ``host`` (a name other than localhost counts as not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StudentServer:
    """uvicorn serving the API on a socket bound when the server is made (port 0: the
    port is known at once); ``serve_forever()`` runs it, ``shutdown()`` from another
    thread stops it, ``server_close()`` frees the socket."""

    def __init__(self, model: ServedModel, sock: socket.socket, api_key: str | None):
        import uvicorn

        self.model, self.socket = model, sock
        config = uvicorn.Config(create_app(model, api_key), lifespan="off", log_config=None,
                                timeout_keep_alive=5, timeout_graceful_shutdown=5,
                                http=guarded_protocol(model.limits))
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


def make_server(student: TransformersStudent, host: str = "127.0.0.1", port: int = 8000,
                model_name: str | None = None, api_key: str | None = None,
                limits: Limits | None = None) -> StudentServer:
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
