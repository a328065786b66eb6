"""The machinery the fake upstreams share: a uvicorn server in a thread that records requests.

A fake subclasses ``FakeServer`` and answers each recorded request in ``answer``. The server
counts what a test needs to prove its client let go: ``active_responses``, ``abandoned``,
``open_connections`` and ``client_ports``. The cutting helpers make streams arrive in small,
seeded pieces, so every run of a test sees the same cuts.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn

Json = dict[str, Any]
AsgiMessage = dict[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# At stop, responses still running after this long are cancelled (a test left a stream unread).
STOP_GRACE_SECONDS = 3
# Idle keep-alive connections are closed after this long. Longer than the proxy's HTTP client
# keeps an idle connection (LiteLLM's pool: 15 s), as a provider's edge is: with uvicorn's 5 s,
# a request sent on a pooled connection in the instant the server closed it failed with a 502.
IDLE_CONNECTION_SECONDS = 75
_UTF8_LEAD_BYTE = re.compile(rb"[\xc0-\xff]")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    json: Json | None  # the body when it is a JSON object


@dataclass(frozen=True)
class Reply:
    """Writes one response, every one of them carrying a request id like the provider's."""

    send: Send
    request_id: str
    request_id_header: str = "request-id"

    async def start(self, status: int, content_type: str, extra: Headers | None = None) -> None:
        headers = [
            (b"content-type", content_type.encode()),
            (self.request_id_header.encode(), self.request_id.encode()),
        ]
        await self.send(
            {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
        )

    async def write(self, data: bytes, *, more: bool) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def send_json(self, status: int, payload: Json, extra: Headers | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        length = [(b"content-length", str(len(data)).encode())]
        await self.start(status, "application/json", length + (extra or []))
        await self.write(data, more=False)


class FakeServer(abc.ABC):
    """A fake upstream run in a background thread; ``requests`` lists what it received."""

    name: ClassVar[str] = "fake"  # for the thread's name and error messages
    request_id_header: ClassVar[str] = "request-id"
    request_id_prefix: ClassVar[str] = "req_fake_"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._active = 0
        self._abandoned = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    @abc.abstractmethod
    async def answer(self, request: RecordedRequest, receive: Receive, reply: Reply) -> None:
        """Answer a request already recorded; ``receive`` only brings the client's disconnect."""

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"The {self.name} server is already running.")
        # Port 0 lets the kernel pick a free port, and uvicorn makes the socket itself: asyncio
        # then sets TCP_NODELAY, without which each small write waits for the peer's ACK.
        # log_config=None leaves the test run's logging alone (records reach pytest's capture).
        config = uvicorn.Config(
            _App(self),
            host="127.0.0.1",
            port=0,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=IDLE_CONNECTION_SECONDS,
            timeout_graceful_shutdown=STOP_GRACE_SECONDS,
        )
        server = uvicorn.Server(config)
        thread_name = self.name.lower().replace(" ", "-")
        thread = threading.Thread(target=server.run, name=thread_name, daemon=True)
        thread.start()
        self._wait_until_started(server, thread)
        port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        # uvicorn checks should_exit every 0.1 s, then lets running responses finish.
        self._thread.join(timeout=STOP_GRACE_SECONDS + 5)
        if self._thread.is_alive():
            raise RuntimeError(f"The {self.name} server did not stop.")
        self._server = self._thread = None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def active_responses(self) -> int:
        """Requests being answered right now (a stalled stream counts until its client leaves)."""
        with self._lock:
            return self._active

    @property
    def abandoned(self) -> int:
        """Requests whose client left before the answer was complete, since start."""
        with self._lock:
            return self._abandoned

    @property
    def open_connections(self) -> int:
        """Client connections open to the server, idle keep-alive ones included."""
        return len(self.client_ports)

    @property
    def client_ports(self) -> frozenset[int]:
        """The client-side ports of the open connections, to tell one client's from another's."""
        server = self._server
        connections = list(server.server_state.connections) if server is not None else []
        peers = [getattr(connection, "client", None) for connection in connections]
        return frozenset(peer[1] for peer in peers if peer is not None)

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def raw_bodies(self) -> bytes:
        """Every recorded path, query, header value and body, to search for leaked values."""
        parts: list[bytes] = []
        for request in self.requests:
            parts += [request.path.encode(), request.query_string.encode("latin-1")]
            parts += [value.encode("latin-1") for value in request.headers.values()]
            parts.append(request.body)
        return b"\n".join(parts)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _count(self, *, active: int = 0, abandoned: int = 0) -> None:
        with self._lock:
            self._active += active
            self._abandoned += abandoned

    def _new_reply(self, send: Send) -> Reply:
        request_id = f"{self.request_id_prefix}{uuid.uuid4().hex[:24]}"
        return Reply(send, request_id, self.request_id_header)

    def _wait_until_started(self, server: uvicorn.Server, thread: threading.Thread) -> None:
        deadline = time.monotonic() + 10
        while not server.started:
            # A thread that ended without starting the server failed to bind or load the app.
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=5)
                raise RuntimeError(f"The {self.name} server did not start.")
            time.sleep(0.01)


class _App:
    """The raw ASGI application: record the request, then answer it, counting both."""

    def __init__(self, fake: FakeServer) -> None:
        self._fake = fake

    async def __call__(self, scope: Json, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off and nothing opens websockets
        self._fake._count(active=1)
        try:
            await self._answer(scope, self._watched(receive), send)
        finally:
            self._fake._count(active=-1)

    def _watched(self, receive: Receive) -> Receive:
        # The app only receives again after the body while it pauses: a disconnect seen then,
        # or while reading the body, is a client leaving before its answer was complete.
        async def watched() -> AsgiMessage:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._fake._count(abandoned=1)
            return message

        return watched

    async def _answer(self, scope: Json, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            return  # the client left before sending its whole body
        request = _recorded(scope, body)
        self._fake._record(request)
        await self._fake.answer(request, receive, self._fake._new_reply(send))


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _recorded(scope: Json, body: bytes) -> RecordedRequest:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return RecordedRequest(
        method=scope["method"],
        path=scope["path"],
        query_string=scope["query_string"].decode("latin-1"),
        headers=headers,
        body=body,
        json=_json_object(body),
    )


def _json_object(body: bytes) -> Json | None:
    try:
        parsed = json.loads(body)
    except ValueError:  # also covers bytes that are not UTF-8
        return None
    return parsed if isinstance(parsed, dict) else None


async def pause_unless_disconnected(receive: Receive, seconds: float) -> bool:
    """Wait, and say False at once if the client gives up, so no response outlives its test."""
    try:
        async with asyncio.timeout(seconds):
            # The body has been read: the only message left to receive is the disconnect.
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return True
    return False


def error_status(model: str, statuses: Collection[int]) -> int | None:
    """The status a ``fake-error-<status>`` model asks for, when the fake knows it."""
    prefix, _, code = model.rpartition("-")
    if prefix == "fake-error" and code.isdigit() and int(code) in statuses:
        return int(code)
    return None


def seeded_random(body: bytes) -> random.Random:
    """A generator seeded by the request body, so the same request is always cut alike."""
    # sha256, not hash(), which changes per process.
    return random.Random(hashlib.sha256(body).digest())


def text_pieces(text: str, rng: random.Random) -> list[str]:
    """Cut text into pieces of 1-4 characters, so a placeholder lands across several deltas."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = start + rng.randint(1, 4)
        pieces.append(text[start:end])
        start = end
    return pieces


def socket_writes(data: bytes, rng: random.Random) -> list[bytes]:
    """Cut an SSE stream into socket writes that ignore event and character boundaries.

    Most writes are 1-40 bytes, so events span several of them; every eighth write runs to
    the end of the third event boundary ahead, so one read can also hold several events.
    """
    cuts: set[int] = set()
    position = count = 0
    while position < len(data):
        count += 1
        if count % 8 == 0:
            position = _after_boundaries(data, position, 3)
        else:
            position = min(position + rng.randint(1, 40), len(data))
        cuts.add(position)
    # Make sure one multi-byte UTF-8 character (if any) is cut in two.
    lead = _UTF8_LEAD_BYTE.search(data)
    if lead is not None:
        cuts.add(lead.start() + 1)
    return [data[start:end] for start, end in itertools.pairwise([0, *sorted(cuts)])]


def _after_boundaries(data: bytes, position: int, count: int) -> int:
    for _ in range(count):
        found = data.find(b"\n\n", position)
        if found == -1:
            return len(data)
        position = found + 2
    return position
