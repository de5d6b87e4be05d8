"""A wall clock that does not count time the process spends suspended.

A long eval may be paused (Ctrl-Z then ``fg``, or ``kill -STOP`` / ``-CONT`` to lend
the CPU to something else) and its games must not be charged for the pause. A
daemon thread ticks every ``TICK`` seconds; a tick that arrives far later than
asked for means every thread of the process was stopped, and the gap is added
to ``paused()``. Busy torch threads do not delay it: they release the GIL.
"""
from __future__ import annotations

import threading
import time

TICK = 0.25
GAP = 2.0               # a tick this late was a suspension, not scheduling noise

_lock = threading.Lock()
_paused = 0.0
_watcher: threading.Thread | None = None


def now() -> float:
    """Seconds on a monotonic clock, minus the time the process was suspended."""
    _start()
    with _lock:
        return time.perf_counter() - _paused


def paused() -> float:
    """Seconds spent suspended since the clock was first read."""
    with _lock:
        return _paused


def _start() -> None:
    global _watcher
    if _watcher is None:
        _watcher = threading.Thread(target=_watch, name="ldengine-clock", daemon=True)
        _watcher.start()


def _watch() -> None:
    global _paused
    last = time.perf_counter()
    while True:
        time.sleep(TICK)
        tick = time.perf_counter()
        if tick - last > GAP:
            with _lock:
                _paused += tick - last - TICK
        last = tick
