"""uvicorn's httptools protocol with bounds on what a client may make a worker hold and wait for.

Serve with `uvicorn config.asgi:application --http config.http:BoundedHttpProtocol --ws none`
(`make run` and `make serve` do). Without `--http` none of these bounds exist.

Why a protocol class: uvicorn 0.54 on httptools bounds nothing before the application is
called. httptools joins the pieces of a header name or value until the field is complete, and
uvicorn joins the request target the same way, so one 100 MB header is held whole (and copied
while it grows); uvicorn counts no header fields, nor trailer fields, which it adds to the
running request's headers. No timer runs while a request is being received: uvicorn arms its
keep-alive timer only after a response, and any byte cancels it, so a client that sends a
byte every few seconds holds a connection for as long as it likes. uvicorn's own options do
not help (`h11_max_incomplete_event_size` is for the slower h11 parser and answers 400;
`timeout_keep_alive` only covers the idle time between requests), and ASGI middleware comes too
late: the application is called once the request head is complete. So the bounds are kept
where the bytes arrive, in `data_received` and the parser's callbacks:

- Header bytes: the request line and header fields of a request, from the end of the previous
  request, may take `HTTP_MAX_HEADER_BYTES`; more gets 431 and the connection is closed. Data
  is fed to the parser in pieces no longer than what is left of the limit, counted before they
  are fed, so the parser never joins more than the limit; only where a piece ends one request
  and begins the next do the next one's bytes in it go uncounted: about twice the limit at
  worst.
- Trailers and chunk extensions (of a chunked body) are counted the same way: the pieces of a
  body that bring no body data add up until one brings some, and over the limit get 431.
- Header fields: at most `HTTP_MAX_HEADERS` fields a request, trailers included; 431.
- Head timeout: the head must be complete within `HTTP_HEADER_TIMEOUT_SECONDS` of the
  connection opening (first request) or of the first byte of the next request (keep-alive:
  the idle time before it stays uvicorn's `timeout_keep_alive`). Then 408 and close, or a plain
  close if the connection never sent a byte: a 408 that nobody asked for could be read by a
  client as the answer to the request it is about to send.
- Body progress: while the server waits for a request body, each `HTTP_BODY_TIMEOUT_SECONDS`
  must bring `HTTP_BODY_MIN_BYTES_PER_SECOND` times that many bytes of it (at least one), or
  its end; else 408 and close. A plain stall timer would let a client hold a connection for
  hours with a byte now and then; a minimum rate makes every held connection cost the client
  bandwidth. Windows are not judged while the server is the one waiting: reading paused
  because the application has not taken what came, a `100 Continue` not yet sent, the request
  queued behind a pipelined one.
- Body size: a request whose `Content-Length` is over `PROXY_MAX_BODY_BYTES` gets 413 as soon
  as its head is complete, and the connection is closed: none of its body is read, nothing is
  spooled, and no key is needed to be refused. A chunked body gets 413 the moment its running
  total goes over the limit (if no response has started; else the connection is just closed).
  Without this, Django's handler spools the whole body (to disk beyond 2.5 MB) before the view
  checks its size; that check stays, as a second line.
- Concurrency: a request whose head completes while the worker holds more than
  `HTTP_MAX_CONCURRENCY` connections, or that many requests in progress, gets 503 and the
  connection is closed (uvicorn's `--limit-concurrency` counts the same things, but answers in
  plain text, and only where the flag is given). Idle kept-alive connections count: each
  holds a file descriptor, and running out of those breaks the requests in progress too
  (their connections to the provider, Redis and the database).
- Upgrades: none is ever taken, whatever `--ws` says (Django answers no WebSocket, and a
  connection handed to a WebSocket protocol would leave every bound here). An upgrade request
  is answered as a plain request, as uvicorn does, and the connection is closed after the
  answer: httptools does not parse the body of a request that asks for an upgrade, so bytes
  after its head must never be read as another request.
- Responses are never cut by these timers: no timer runs once a request's body is complete,
  and a timer that ends while an earlier response on the connection is still owed or being
  sent starts again instead. A response is only written when none is owed: otherwise the
  connection is just closed.

Refusals are Anthropic-shaped JSON errors (`invalid_request_error`; `request_too_large` for
413, `overloaded_error` for 503) written here, without Django (this module is imported before
Django is set up, so the settings are read when a connection is made). They are logged without
any header name or value: those may hold keys.

Security assumption: the server runs uvicorn 0.54 with httptools (pinned in requirements.txt);
this class overrides parts of `HttpToolsProtocol` that are not a public API, and
`tests/security/test_http_limits.py` fails if an upgrade changes them. A load balancer in front
may buffer requests and make some of these bounds moot; they still protect a worker that is
reached directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httptools
from django.conf import settings
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpLimits:
    """The bounds one connection keeps (see the module docstring), from the settings."""

    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_timeout: float
    body_min_bytes_per_second: int
    max_body_bytes: int
    max_concurrency: int  # 0: no cap

    @classmethod
    def from_settings(cls) -> HttpLimits:
        return cls(
            max_header_bytes=settings.HTTP_MAX_HEADER_BYTES,
            max_headers=settings.HTTP_MAX_HEADERS,
            header_timeout=settings.HTTP_HEADER_TIMEOUT_SECONDS,
            body_timeout=settings.HTTP_BODY_TIMEOUT_SECONDS,
            body_min_bytes_per_second=settings.HTTP_BODY_MIN_BYTES_PER_SECOND,
            max_body_bytes=settings.PROXY_MAX_BODY_BYTES,
            max_concurrency=settings.HTTP_MAX_CONCURRENCY,
        )

    @property
    def body_bytes_per_window(self) -> int:
        return max(1, math.ceil(self.body_min_bytes_per_second * self.body_timeout))


class _Refused(Exception):
    """Raised in a parser callback to stop the parser; the refusal is on the protocol."""


# The error type and message of each refusal; the others are invalid_request_error, "<phrase>.".
_ERRORS = {
    # The message of proxy.errors.RequestTooLarge: the same words whichever line refuses.
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: ("request_too_large", "The request body is too large."),
    HTTPStatus.SERVICE_UNAVAILABLE: ("overloaded_error", "The server is at capacity; retry later."),
}


class BoundedHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses oversized and slow requests (431, 413, 408) and any beyond
    the concurrency cap (503)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = HttpLimits.from_settings()
        self._timer: asyncio.TimerHandle | None = None  # the deadline of the current phase
        # Between the end of a request and the end of the next one's head.
        self._reading_head = True
        self._head_bytes = 0
        self._head_seen = False  # a byte of the head has arrived
        self._fields = 0
        # The current request's body: data in this window and in the piece being fed, and the
        # bytes of the pieces without data since the last one with some (trailers, say).
        self._window_bytes = 0
        self._piece_had_data = False
        self._bytes_without_data = 0
        self._content_length: int | None = None
        self._body_bytes = 0
        self._refusal: tuple[HTTPStatus, str] | None = None
        # An upgrade request was answered as a plain one: nothing after its head is read.
        self._upgrade_ignored = False

    # --- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn has no timer for a connection that never sends a request.
        self._arm(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _should_upgrade(self) -> bool:
        """Never: the connection stays HTTP and within these bounds, whatever `--ws` says."""
        return False

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._upgrade_ignored:
            # Perhaps the body that httptools skipped, perhaps a request hidden in it: neither
            # is read. The connection closes once the upgrade request is answered.
            return
        limit = self.limits.max_header_bytes
        rest = memoryview(data)
        while rest:
            if self._reading_head:
                self._head_seen = True
                if self._timer is None:  # the first byte of a request on a kept-alive connection
                    self._arm(self.limits.header_timeout, self._head_timed_out)
                piece = rest[: limit - self._head_bytes]
                # Counted before the parser sees them: what it joins is never more than this.
                self._head_bytes += len(piece)
            else:
                # One byte more than the limit left, so that a run of pieces without body data
                # over the limit is caught at its first byte too many.
                piece = rest[: limit - self._bytes_without_data + 1]
            rest = rest[len(piece) :]
            self._piece_had_data = False
            if not self._feed(piece):
                return
            if self._reading_head:
                if self._head_bytes >= limit:
                    self._refuse(
                        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"head over {limit} bytes"
                    )
                    return
            elif self._piece_had_data:
                self._bytes_without_data = 0
            else:
                self._bytes_without_data += len(piece)
                if self._bytes_without_data > limit:
                    self._refuse(
                        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                        f"over {limit} bytes of a body without data (trailers, extensions)",
                    )
                    return

    def _feed(self, piece: memoryview) -> bool:
        """uvicorn's data_received for one piece, telling our refusals from parse errors.

        Whether to go on feeding: not once the connection is closing or past an upgrade request.
        """
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(*self._refusal)
            else:
                message = "Invalid HTTP request received."
                self.logger.warning(message)
                self.send_400_response(message)
            return False
        except httptools.HttpParserUpgrade:
            self._ignore_upgrade()
            return False
        return not self.transport.is_closing()

    def _ignore_upgrade(self) -> None:
        """The head and (empty) end of an upgrade request were handed on: close after its
        answer."""
        self._upgrade_ignored = True
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is not None:
            cycle.keep_alive = False
        logger.info(
            "answering an upgrade request from %s as a plain request, then closing",
            self._client(),
        )

    # --- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_seen = True
        self._fields = 0
        self._content_length = None
        self._body_bytes = 0
        if self._timer is None:
            self._arm(self.limits.header_timeout, self._head_timed_out)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailer fields come here too, after the head: they count as well.
        self._fields += 1
        if self._fields > self.limits.max_headers:
            self._refusal = (
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"more than {self.limits.max_headers} header fields",
            )
            raise _Refused
        if name.lower() == b"content-length":
            # llhttp has checked it: digits only, one field, no Transfer-Encoding with it.
            self._content_length = int(value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        # Refused before the state below moves on to the body: while the head is what is
        # being read, a refusal is written only if no earlier response is still owed.
        limit = self.limits.max_body_bytes
        if self._content_length is not None and self._content_length > limit:
            self._refusal = (
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"a body of {self._content_length} bytes declared, over {limit}",
            )
            raise _Refused
        if (load := self._over_capacity()) is not None:
            self._refusal = (HTTPStatus.SERVICE_UNAVAILABLE, load)
            raise _Refused
        self._reading_head = False
        self._disarm()
        super().on_headers_complete()
        self._window_bytes = self._bytes_without_data = 0
        self._arm(self.limits.body_timeout, self._body_window_ended)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            # Only a chunked body gets here: a declared length was checked with the head.
            self._refusal = (
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"a body over {self.limits.max_body_bytes} bytes",
            )
            raise _Refused
        self._window_bytes += len(body)
        self._piece_had_data = True
        super().on_body(body)

    def _over_capacity(self) -> str | None:
        """Why this request would take the worker over its cap, or None."""
        cap = self.limits.max_concurrency
        # uvicorn's sets: this connection is among the connections; the request is no task yet.
        connections, requests = len(self.connections), len(self.tasks)
        if cap and (connections > cap or requests >= cap):
            return f"{connections} connections and {requests} requests in progress, cap {cap}"
        return None

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._reading_head = True
        self._head_bytes = 0
        self._head_seen = False
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is not None and cycle.response_complete and self.timeout_keep_alive_task is None:
            # Answered before its body was complete: uvicorn armed its keep-alive timer then,
            # and the rest of the body cancelled it. Without this, nothing would close the
            # connection if no other request came.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    # --- timers ---------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self._may_answer():
            # An earlier request of this (pipelining) client is still being answered.
            self._arm(self.limits.header_timeout, self._head_timed_out)
        elif not self._head_seen:
            logger.debug("closed a connection from %s that sent no request", self._client())
            self.transport.close()
        else:
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"head not complete within {self.limits.header_timeout:g} s",
            )

    def _body_window_ended(self) -> None:
        self._timer = None
        received, self._window_bytes = self._window_bytes, 0
        cycle: RequestResponseCycle | None = self.cycle
        if self.transport.is_closing() or cycle is None:
            return
        server_waits = (
            self.flow.read_paused
            or cycle.waiting_for_100_continue
            or self._queued(cycle)
            or (cycle.response_started and not cycle.response_complete)
        )
        if server_waits or received >= self.limits.body_bytes_per_window:
            self._arm(self.limits.body_timeout, self._body_window_ended)
            return
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            f"{received} body bytes in {self.limits.body_timeout:g} s, "
            f"fewer than {self.limits.body_bytes_per_window}",
        )

    # --- refusing -------------------------------------------------------------------------

    def _queued(self, cycle: RequestResponseCycle) -> bool:
        return any(queued is cycle for queued, _ in self.pipeline)

    def _may_answer(self) -> bool:
        """Whether a response written now would be the answer to the request being read."""
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is None:
            return True
        if self._reading_head:  # the cycle is the previous request's
            return cycle.response_complete
        return not self._queued(cycle) and not cycle.response_started

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        """Answer `status` when no other response is owed, and close the connection."""
        self._disarm()
        answer = self._may_answer()
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The application must not write after us, and its receive() now says the
            # client has left (as it would once the connection is lost).
            cycle.disconnected = True
            cycle.message_event.set()
        logger.warning(
            "refused a request from %s: %s (%s)",
            self._client(),
            reason,
            f"answered {status.value}" if answer else "closed without an answer",
        )
        if answer:
            self.transport.write(self._error_response(status))
        self.transport.close()

    def _error_response(self, status: HTTPStatus) -> bytes:
        error_type, message = _ERRORS.get(status, ("invalid_request_error", f"{status.phrase}."))
        body = json.dumps(
            {"type": "error", "error": {"type": error_type, "message": message}}
        ).encode()
        head = [STATUS_LINE[status.value]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        return b"".join(head) + body

    def _client(self) -> str:
        if self.client is None:
            return "an unknown address"
        host, port = self.client
        return f"{host}:{port}"
