"""The teacher (L-LLM): any OpenAI-compatible chat endpoint, over plain HTTP.

``ChatClient(url, model, key_env)`` posts ``{url}/chat/completions`` with
temperature 0 and returns the answer's text: ``chat`` for one message,
``converse`` for a conversation (``ldengine distill`` asks for repairs). The
key is read from the environment variable ``key_env`` (default
``LDENGINE_TEACHER_KEY``) and never written anywhere. Network trouble, HTTP
errors and malformed replies become ``TeacherError`` with a one-line reason;
429 and 5xx answers are retried with a growing pause.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from ldengine.errors import LDEngineError

DEFAULT_KEY_ENV = "LDENGINE_TEACHER_KEY"


class TeacherError(Exception):
    """The teacher endpoint could not give an answer (during a game: that game is
    recorded as an error and the others go on)."""


@dataclass
class ChatClient:
    url: str
    model: str
    key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise LDEngineError(f"teacher URL must start with http:// or https://, got {self.url!r}")
        if not self.model:
            raise LDEngineError("a teacher endpoint needs a model name (--teacher-model)")
        self.url = self.url.rstrip("/")
        self.calls = 0
        self.tokens = 0

    def chat(self, prompt: str, max_tokens: int = 64) -> str:
        """The assistant's reply to one user message (greedy: temperature 0)."""
        return self.converse([{"role": "user", "content": prompt}], max_tokens)

    def converse(self, messages: list[dict], max_tokens: int = 64) -> str:
        """The assistant's reply to a conversation (``[{"role", "content"}, ...]``), greedy."""
        body = json.dumps({"model": self.model, "temperature": 0, "max_tokens": max_tokens,
                           "messages": messages}).encode()
        reply = self._post(f"{self.url}/chat/completions", body)
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise TeacherError(f"teacher reply has no choices[0].message.content: {str(reply)[:120]}") from None
        if not isinstance(text, str):
            raise TeacherError("teacher reply's content is not text")
        self.calls += 1
        usage = reply.get("usage") if isinstance(reply, dict) else None
        if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
            self.tokens += usage["total_tokens"]
        return text

    def _post(self, url: str, body: bytes) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                if exc.code in (429, 500, 502, 503, 504) and attempt < self.retries:
                    time.sleep(self.backoff_s * 2 ** attempt)
                    continue
                hint = " (is the API key set in $%s?)" % self.key_env if exc.code in (401, 403) else ""
                raise TeacherError(f"teacher endpoint answered HTTP {exc.code} {exc.reason}{hint}") from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                if attempt < self.retries:
                    time.sleep(self.backoff_s * 2 ** attempt)
                    continue
                reason = getattr(exc, "reason", exc)
                raise TeacherError(f"cannot reach the teacher endpoint {self.url}: {reason}") from None
            except (ValueError, UnicodeDecodeError):
                raise TeacherError("teacher endpoint did not answer JSON") from None
        raise TeacherError("teacher endpoint gave no answer")  # not reached
