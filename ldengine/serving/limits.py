"""What one request may ask of the served model, and the refusal a client gets instead."""
from __future__ import annotations

from dataclasses import dataclass

from ldengine.errors import LDEngineError


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the model, and how long requests may wait for it.

    The defaults fit the engine's own use with room to spare (on a 2-core CPU, about
    2 ms per token read and 60 ms per token written): a top-26 selection scored with
    echo reads under 4,000 tokens (a list's common beginning counted once) and writes
    none; writing an emergency function reads about 1,000 and writes at most 160 (the
    engine's chat answers, at most 256).
    """
    read_tokens: int = 8192      # tokens the model reads for one request (= SmolLM2's context)
    written_tokens: int = 512    # tokens it writes, max_tokens x prompts
    request_s: float = 60.0      # wall-clock from admission to answer, waits for turns included
    queue_s: float = 10.0        # the longest wait for a request's first turn on the model
    requests: int = 8            # requests admitted at once; more get 429
    body_s: float = 5.0          # the whole request body must arrive within this (else 408)
    header_s: float = 10.0       # a request's line and headers must arrive within this of the connection
    #                              opening or of its previous answer (else the connection is closed)
    connections: int = 512       # connections open at once; more are closed as soon as they are accepted
    per_client: int = 64         # ... and from one client address


class RequestError(LDEngineError):
    """A request the server refuses; ``status`` is its HTTP status (4xx, or 503 when
    the model is too busy), ``retry_after`` the seconds a client should wait, if any."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}
