"""Connections that a slow or idle client cannot hold forever: read deadlines and a connection cap.

uvicorn has no deadline on reading a request (uvicorn#157): its keep-alive timer stops at the
first byte, so a client that sends its headers (or body) a byte at a time, or opens a connection
and sends nothing, holds a socket and a file descriptor for as long as it likes; a few hundred of
them ("slowloris") left ``/health`` unreachable with "Too many open files". ASGI middleware cannot
help, it runs only once the headers have arrived. So the fix is at the HTTP protocol:
:class:`GuardedH11Protocol` is uvicorn's own h11 protocol with

- a **header deadline**: a request's headers must be complete within ``header_timeout`` seconds
  of the connection opening, or of the previous response on a keep-alive connection;
- a **body deadline**: its body must be complete within ``body_timeout`` seconds of the headers;
  (both are whole-phase deadlines, armed once per phase, not per read: a byte every few seconds
  does not extend them). A request that misses one is answered 408 if anything of it arrived,
  and its connection is closed;
- a **connection cap** per worker: when a new connection would exceed ``max_connections``, the
  connection that has waited longest for a client (idle, or still sending a request) is closed
  to make room, so a flood of idle connections cannot lock out a client that sends its request
  promptly; only when every connection has a request being answered is the new one refused
  (503);
- a **keep-alive limit**: an idle keep-alive connection is closed after ``keep_alive_timeout``
  seconds (uvicorn's own timer), and after ``max_requests_per_connection`` requests the response
  says ``Connection: close``.

Why wrap uvicorn rather than switch server: the service already relies on uvicorn for
``--workers N`` (its supervisor, sharing a socket we bind with TCP_NODELAY), graceful shutdown
and lifespan, and all of that keeps working, since this class changes only what happens on a
connection. Hypercorn's ``read_timeout`` is a per-read inactivity timeout, which a client
sending a byte every few seconds never trips, and it has no connection cap; a reverse proxy
(nginx's ``client_header_timeout``) is the other good answer, but ``headstart serve`` must be safe
on its own. The protocol is h11 (pure Python): httptools is faster at parsing, but parsing is
not where a model service spends its time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from headstart.serving.limits import ConnectionLimits

logger = logging.getLogger(__name__)

HEADERS, BODY = "headers", "body"  # the phases of reading a request that have a deadline
_CLOSE_HEADER = (b"connection", b"close")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines, a connection cap and a keep-alive limit.

    Give it to uvicorn as ``Config(http=functools.partial(GuardedH11Protocol, limits=...))``;
    the partial pickles, so ``--workers N`` carries it to every worker process.
    """

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.phase: str | None = None  # HEADERS or BODY while waiting for the client, else None
        self.phase_started = 0.0
        self.received_in_phase = False
        self.requests = 0
        self.deadline: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter(HEADERS)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.received_in_phase = True
        super().data_received(data)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle and self.cycle is not None:  # a request's headers arrived
            self.requests += 1
            if self.requests >= self.limits.max_requests_per_connection:
                # uvicorn answers a request that says "Connection: close" with the same header and
                # closes after the response; the application task has not started yet.
                self.cycle.keep_alive = False
                self.headers.append(_CLOSE_HEADER)
        self._follow_request()

    # ---------------------------------------------------------------- deadlines
    def _follow_request(self) -> None:
        """Arm the deadline of the phase the client is in, keeping a running one (never extend it)."""
        if self.transport is None or self.transport.is_closing():
            self._enter(None)
        elif self.conn.their_state is h11.IDLE:
            self._enter(HEADERS)
        elif self.conn.their_state is h11.SEND_BODY:
            self._enter(BODY)
        else:  # the request is complete (or broken): the application, not the client, is awaited
            self._enter(None)

    def _enter(self, phase: str | None) -> None:
        if phase == self.phase:
            return
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.phase, self.received_in_phase = phase, False
        if phase is not None:
            self.phase_started = self.loop.time()
            timeout = self.limits.header_timeout if phase == HEADERS else self.limits.body_timeout
            self.deadline = self.loop.call_later(timeout, self._expired, phase)

    def _expired(self, phase: str) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        timeout = self.limits.header_timeout if phase == HEADERS else self.limits.body_timeout
        logger.warning("closed a connection whose request %s did not arrive within %g s", phase, timeout,
                       extra={"fields": {"client": _client(self.client), "phase": phase, "timeout_s": timeout}})
        if phase == BODY or self.received_in_phase:
            self._refuse(408, "request_timeout", f"the request's {phase} did not arrive within {timeout:g} s; send "
                         "the whole request at once (the connection is closed).")
        else:  # an idle connection: nothing to answer
            self.transport.close()

    # ---------------------------------------------------------------- the cap
    def _make_room(self) -> None:
        """Over the cap: close the connection waiting longest for its client, or refuse this one."""
        waiting = [c for c in self.connections
                   if c is not self and isinstance(c, GuardedH11Protocol) and c.phase is not None
                   and not c.transport.is_closing()]
        if not waiting:
            logger.warning("refused a connection: all %d connections have a request in progress",
                           self.limits.max_connections, extra={"fields": {"client": _client(self.client)}})
            self._refuse(503, "too_many_connections", f"the server is answering {self.limits.max_connections} "
                         "connections at once (its cap); retry shortly.")
            return
        # Idle or still sending headers first, then slow bodies; the longest waiting of them.
        victim = min(waiting, key=lambda c: (c.phase == BODY, c.phase_started))
        logger.warning("connection cap (%d) reached: closed the connection waiting longest for its client",
                       self.limits.max_connections, extra={"fields": {"client": _client(victim.client),
                                                                      "phase": victim.phase}})
        if victim.received_in_phase or victim.phase == BODY:
            victim._refuse(503, "too_many_connections", "the server is at its connection cap and this connection "
                           "was the slowest to send its request; retry, sending the request at once.")
        else:
            victim.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` outside any request/response cycle and close the connection.

        Written past h11 (whose state may be mid-request) since the connection ends here; a request
        whose application task is waiting for the body sees a disconnect.
        """
        cycle = self.cycle
        if cycle is not None and (cycle.response_started or cycle.disconnected):
            self.transport.close()
            return
        if cycle is not None:  # the application sees a disconnect, and writes nothing more
            cycle.disconnected = True
            cycle.message_event.set()
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        reason = {408: b"Request Timeout", 503: b"Service Unavailable"}[status]
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % (status, reason, len(body)))
        self.transport.write(head + body)
        self.transport.close()


def _client(client: tuple[str, int] | None) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None
