"""Connections an anonymous client cannot hoard: uvicorn's HTTP protocol with a deadline for
each request's headers and caps on open connections, in all and per client address.

uvicorn closes a connection idle *between* requests (``timeout_keep_alive``) and the app
bounds the body (``Limits.body_s``), but a client that sends its headers a byte at a time,
or opens thousands of sockets and says nothing, held them open until the process ran out of
descriptors (issue 34: at about 20,000 sockets ``accept()`` failed with EMFILE and an
authorised request timed out). Here a connection that has not delivered a whole request line
and headers within ``Limits.header_s`` of opening (or of its previous answer) is closed.
When a connection arrives beyond ``Limits.connections`` open ones, or beyond
``Limits.per_client`` from its address, the connection of that scope that has waited longest
for a request's headers, with no byte of one waiting to be read, is closed to make room (the
newcomer is the youngest, and a connection whose request is in the kernel's buffer is never
chosen: a client that sends its request at once is served however many sockets a flood keeps
open, even from the same address, as on loopback); when every connection of the scope is inside a request, the
newcomer is closed as soon as it is accepted, before any byte of it is read. The key is
checked by the app before the body is read (``http.py``), so no unauthorised request costs
the model anything. Refusals are logged at most once every ``LOG_EVERY_S`` seconds, with the
count of those held back, so a flood of sockets cannot fill the disk through the log.
"""
from __future__ import annotations

import logging
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Callable, cast

import h11

from ldengine.serving.limits import Limits

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0          # refusals are logged at most once in this many seconds (a flood wrote 105 MB in 30 s)


class Throttled:
    """Log lines of one kind at most once per ``every`` seconds, the next one saying how many
    were held back in between."""

    def __init__(self, every: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every, self.clock, self.last, self.held = every, clock, float("-inf"), 0

    def warning(self, message: str, *args: object) -> bool:
        """Log ``message % args`` unless one was logged within ``every`` seconds; True if logged."""
        now = self.clock()
        if now - self.last < self.every:
            self.held += 1
            return False
        held, self.held, self.last = self.held, 0, now
        log.warning(message + (f" ({held} more like it in the last {self.every:.0f} s not logged)" if held else ""),
                    *args)
        return True


def guarded_protocol(limits: Limits) -> type:
    """An ``H11Protocol`` class for ``uvicorn.Config(http=...)`` enforcing ``limits``'
    header deadline and connection caps (one class per server: its counts are its own)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    open_by_client: Counter = Counter()
    state = {"open": 0}
    # connections waiting for a request's headers, longest wait first -> address
    waiting: dict[GuardedH11Protocol, str] = {}
    refusals = Throttled()

    def waited_longest(address: str | None) -> GuardedH11Protocol | None:
        """The connection (from ``address``; None: any) waiting longest for a request's headers
        with no byte of one waiting to be read (a connection accepted in the same burst as a
        flood has its request in the kernel's buffer before the event loop reads it)."""
        for protocol, source in list(waiting.items()):
            if protocol.conn.their_state is not h11.IDLE or protocol.transport.is_closing():
                del waiting[protocol]             # inside a request now (or going): not waiting
            elif (address is None or source == address) and not _bytes_waiting(protocol.transport):
                return protocol
        return None

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _counted: str | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(cast("asyncio.Transport", transport))   # a socket's transport
            address = self.client[0] if self.client else "?"
            full = ("from it" if open_by_client[address] >= limits.per_client
                    else "in all" if state["open"] >= limits.connections else None)
            if full:
                victim = waited_longest(address if full == "from it" else None)
                if victim is None:
                    refusals.warning("connection from %s closed: %d open in all, %d from it (caps %d and %d), "
                                     "all inside a request", address, state["open"], open_by_client[address],
                                     limits.connections, limits.per_client)
                    transport.close()
                    return
                refusals.warning("connection from %s closed to make room: it waited longest for its headers "
                                 "(%d open in all, %d from %s; caps %d and %d)", victim._counted, state["open"],
                                 open_by_client[address], address, limits.connections, limits.per_client)
                victim.transport.close()
                victim._release()
            self._counted = address
            state["open"] += 1
            open_by_client[address] += 1
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._release()
            super().connection_lost(exc)

        def _release(self) -> None:
            """Stop counting this connection (at once when it is closed to make room)."""
            self._disarm()
            if self._counted is not None:
                state["open"] -= 1
                open_by_client[self._counted] -= 1
                if open_by_client[self._counted] <= 0:
                    del open_by_client[self._counted]
                self._counted = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()             # the next request's headers have their own deadline

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(limits.header_s, self._headers_late)
            if self._counted is not None:
                waiting[self] = self._counted       # last in line: the newest wait

        def _disarm(self) -> None:
            waiting.pop(self, None)
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_late(self) -> None:
            self._deadline = None
            waiting.pop(self, None)
            # h11 leaves IDLE only once a whole request line and its headers are parsed
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


def _bytes_waiting(transport: asyncio.BaseTransport) -> bool:
    """Has the peer sent bytes the event loop has not read yet? (A peek on a duplicate of the
    socket's descriptor: asyncio's socket wrapper allows no reads.)"""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as dup:
            return bool(dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:                         # nothing to read (EAGAIN), or the socket is gone
        return False
