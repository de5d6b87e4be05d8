"""The schedule: requests take turns on the one model, one forward pass at a time.

A request runs as a series of forward passes (a prompt chunk, a group of prompt
tails, one written token), and the requests admitted take turns on the model one
pass at a time, in arrival order. A 1-token request that arrives while a long one
runs waits for one of its passes, not for all of it. Requests beyond
``Limits.requests`` get 429; one that waits longer than ``Limits.queue_s`` for its
first pass, or runs past ``Limits.request_s``, gets 503.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from ldengine.serving.limits import Limits, RequestError


@dataclass(eq=False)
class _Job:
    deadline: float          # time.monotonic() by which it must be answered
    started: bool = False    # has it had its first turn?


class Turns:
    """Requests take turns on the one model, one forward pass at a time, first come first
    served (a FIFO hand-over, not ``threading.Lock``, which lets the releasing thread
    take it straight back). A request is admitted on its thread with ``request()``;
    each of its passes runs inside ``step()``."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()    # tokens of the steps waiting for the model, in order
        self._busy = False
        self._jobs: set[_Job] = set()     # admitted requests
        self._local = threading.local()
    @property
    def active(self) -> int:
        """Requests admitted now."""
        with self._cond:
            return len(self._jobs)

    @contextmanager
    def request(self) -> Iterator[None]:
        """Admit one request on this thread (429 when ``limits.requests`` are in);
        its wall-clock budget starts now."""
        with self._cond:
            if len(self._jobs) >= self.limits.requests:
                raise RequestError(f"the server is busy with {len(self._jobs)} requests; retry later",
                                   status=429, kind="rate_limit_error", code="too_many_requests",
                                   retry_after=self._retry_after())
            job = _Job(time.monotonic() + self.limits.request_s)
            self._jobs.add(job)
        self._local.job = job
        try:
            yield
        finally:
            self._local.job = None
            with self._cond:
                self._jobs.discard(job)

    @contextmanager
    def step(self) -> Iterator[None]:
        """Hold the model for one forward pass of this thread's request, after the passes
        asked for before it (503 when its first turn or its budget runs out first)."""
        job = getattr(self._local, "job", None)
        if job is None:
            raise RuntimeError("Turns.step() outside Turns.request()")
        now = time.monotonic()
        until = job.deadline if job.started else min(job.deadline, now + self.limits.queue_s)
        if now >= job.deadline or not self._acquire(until):
            raise self._late(job)
        job.started = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _acquire(self, until: float) -> bool:
        me = object()
        with self._cond:
            self._waiting.append(me)
            granted = self._cond.wait_for(lambda: not self._busy and self._waiting[0] is me,
                                          until - time.monotonic())
            self._waiting.remove(me)
            self._busy = self._busy or granted
            self._cond.notify_all()    # the head of the line may have changed
            return granted

    def _late(self, job: _Job) -> RequestError:
        if time.monotonic() >= job.deadline:
            return RequestError(f"the request ran past its time budget of {self.limits.request_s:g} s "
                                "(ldengine serve --request-timeout); send a smaller one",
                                status=503, kind="server_error", code="request_timeout")
        with self._cond:
            wait = self._retry_after()
        return RequestError(f"the model was busy for {self.limits.queue_s:g} s; retry later", status=503,
                            kind="server_error", code="queue_timeout", retry_after=wait)

    def _retry_after(self) -> int:
        """Seconds by which one of the admitted requests will have ended, at the latest
        (their deadlines); at least 1. Call it holding ``_cond``."""
        now = time.monotonic()
        return max(1, math.ceil(min((j.deadline for j in self._jobs), default=now) - now))

