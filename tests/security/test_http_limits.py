"""HTTP limits on a real proxy process: oversized and slow requests are refused early, others not.

One uvicorn process serves `config.asgi:application` with `--http config.http:BoundedHttpProtocol
--ws none` (as `make run` and `make serve` do) and small limits from its environment: 8 KiB of
request head, 20 header fields, 1 s for a head, 1 s windows that must each bring 200 body
bytes, bodies of 5,000 bytes. A second one, on the same site, takes 3 connections at most. They
run on a migrated SQLite database, the test Redis and the fake Anthropic upstream. The tests
speak HTTP over raw sockets, so every byte and every pause is theirs, and prove that:

- a head over the byte limit, a head with too many fields, and trailers over the limit get 431
  in Anthropic's error shape, the connection is closed, and no header value reaches the log;
- 20 MB of header bytes are refused after a few hundred KiB at most: the worker never holds
  the header (memory stays bounded without measuring it);
- a head exactly at both limits is served, and so are pipelined requests;
- a head dribbled slower than the timeout gets 408 and is closed within the timeout (plus a
  margin); a connection that sends nothing is closed without an answer; an idle kept-alive
  connection is left to uvicorn's keep-alive timeout, and its next head is timed from its
  first byte;
- a body that stalls, or trickles in below the minimum rate, gets 408 and is closed, while a
  slow body above the rate is served;
- responses longer than every timer (an answer that starts after 2 s, a stream lasting 2 s)
  arrive whole: no timer runs once a request's body is complete;
- a declared body of 10 GB gets 413 `request_too_large` before the client has sent more than a
  few KiB of it, without a key; a chunked body gets 413 once it goes over the limit; a body of
  exactly the limit, either way, is served;
- a WebSocket upgrade request never gets a 101: it is answered as a plain request, within the
  same limits, and the connection is then closed, so a request hidden after its head is never
  served;
- beyond the concurrency cap a request gets 503 `overloaded_error` and its connection is closed;
  once a connection goes, requests are served again.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest
import redis
from django.conf import settings

from tests.support.constants import HOST
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.sites import ProxyProcess, Site, prepare_site
from tests.support.traffic import echo_of, sse_text

pytestmark = [pytest.mark.slow, pytest.mark.redis]

MAX_HEADER_BYTES = 8192
MAX_HEADERS = 20
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
BODY_MIN_BYTES_PER_SECOND = 200
MAX_BODY_BYTES = 5000
MAX_CONCURRENCY = 3
# How late a refusal may come on a loaded two-core machine, and how early (timer resolution).
MARGIN = 2.0
EARLY = 0.1
READ_TIMEOUT = 15.0
SECRET_HEADER_VALUE = "sk-ant-never-log-this-header-value"


@dataclass(frozen=True)
class Server:
    proxy: ProxyProcess
    key: str

    @property
    def port(self) -> int:
        return self.proxy.port


@dataclass(frozen=True)
class LimitsSite:
    site: Site
    key: str


@pytest.fixture(scope="module")
def limits_site(
    site_directory: Path,
    fake_anthropic: FakeAnthropic,
    redis_client: redis.Redis,
) -> Iterator[LimitsSite]:
    # Under the run's own prefix: the shared Redis is never flushed, only these keys go.
    prefix = f"{settings.CACHES['default']['KEY_PREFIX']}:http-limits-{uuid.uuid4().hex[:8]}"
    site = prepare_site(
        site_directory,
        redis_url=str(settings.CACHES["default"]["LOCATION"]),
        redis_key_prefix=prefix,
        upstream_url=fake_anthropic.base_url,
        HTTP_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        HTTP_MAX_HEADERS=str(MAX_HEADERS),
        HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        HTTP_BODY_MIN_BYTES_PER_SECOND=str(BODY_MIN_BYTES_PER_SECOND),
        PROXY_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
    )
    try:
        yield LimitsSite(site, site.create_api_key("http-limits", "http-limits"))
    finally:
        for name in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
            redis_client.delete(name)


def _serve(limits_site: LimitsSite, name: str, **settings: str) -> Iterator[Server]:
    site = replace(limits_site.site, settings={**limits_site.site.settings, **settings})
    proxy = ProxyProcess(site, name=name, lifespan="on")
    try:
        proxy.wait_ready()
        yield Server(proxy, limits_site.key)
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def server(limits_site: LimitsSite) -> Iterator[Server]:
    yield from _serve(limits_site, "http-limits")


@pytest.fixture(scope="module")
def capped_server(limits_site: LimitsSite) -> Iterator[Server]:
    yield from _serve(limits_site, "http-capped", HTTP_MAX_CONCURRENCY=str(MAX_CONCURRENCY))


# --- raw HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, str]:
        payload = json.loads(self.body)
        assert payload["type"] == "error", payload
        error: dict[str, str] = payload["error"]
        return error


def connect(port: int, *, send_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.settimeout(READ_TIMEOUT)
    sock.connect((HOST, port))
    return sock


def read_reply(stream: BinaryIO) -> Reply:
    """One response: status line, headers, and a body of content-length bytes (or to the end)."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    body = stream.read(int(length)) if length is not None else stream.read()
    return Reply(int(status_line.split()[1]), headers, body)


def is_closed(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (the next read finds its end)."""
    sock.settimeout(MARGIN)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def head(*fields: str, request_line: str = "GET /health HTTP/1.1") -> bytes:
    lines = [request_line, f"Host: {HOST}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def head_of_size(size: int, *fields: str) -> bytes:
    """A GET /health head of exactly `size` bytes: Host, `fields`, and X-Pad to fill it up."""
    bare = len(head(*fields, "X-Pad: "))
    assert bare <= size, "too small for these fields"
    return head(*fields, "X-Pad: " + "p" * (size - bare))


def numbered_fields(count: int) -> list[str]:
    return [f"X-Field-{number}: {number}" for number in range(count)]


def exchange(port: int, request: bytes) -> tuple[Reply, bool]:
    """Send a request on a new connection: the reply, and whether the connection was then
    closed."""
    with connect(port) as sock, sock.makefile("rb") as stream:
        sock.sendall(request)
        reply = read_reply(stream)
        return reply, is_closed(sock)


def dribble(sock: socket.socket, data: bytes, interval: float, deadline: float) -> None:
    """Send `data` one byte per `interval` until it is sent, the server answers or closes, or
    `deadline` passes."""
    for byte in data:
        if time.monotonic() > deadline:
            return
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:
            return
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return


def messages_head(length: int, key: str = "") -> bytes:
    fields = ["Content-Type: application/json", f"Content-Length: {length}"]
    if key:
        fields.append(f"x-api-key: {key}")
    return head(*fields, request_line="POST /v1/messages HTTP/1.1")


def messages_body(model: str, text: str) -> bytes:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    return json.dumps(body).encode()


def chunked(body: bytes, size: int) -> bytes:
    """`body` in a chunked transfer coding, in chunks of `size` bytes."""
    pieces = [body[offset : offset + size] for offset in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def chunked_messages_head(key: str) -> bytes:
    fields = ["Content-Type: application/json", "Transfer-Encoding: chunked", f"x-api-key: {key}"]
    return head(*fields, request_line="POST /v1/messages HTTP/1.1")


WEBSOCKET_FIELDS = (
    "Connection: Upgrade",
    "Upgrade: websocket",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
)


# --- header size and count --------------------------------------------------------------------


def test_a_head_over_the_byte_limit_gets_431_and_the_connection_is_closed(
    server: Server,
) -> None:
    request = head_of_size(MAX_HEADER_BYTES + 1, f"X-Secret: {SECRET_HEADER_VALUE}")
    reply, closed = exchange(server.port, request)

    assert reply.status == 431
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["connection"] == "close"
    assert reply.error() == {
        "type": "invalid_request_error",
        "message": "Request Header Fields Too Large.",
    }
    assert closed
    output = server.proxy.output()
    assert f"head over {MAX_HEADER_BYTES} bytes (answered 431)" in output
    assert SECRET_HEADER_VALUE not in output


def test_a_head_exactly_at_both_limits_is_served(server: Server) -> None:
    # Host, 18 numbered fields and X-Pad.
    request = head_of_size(MAX_HEADER_BYTES, *numbered_fields(MAX_HEADERS - 2))
    assert len(request) == MAX_HEADER_BYTES and request.count(b": ") == MAX_HEADERS

    reply, _ = exchange(server.port, request)

    assert reply.status in (200, 503), reply
    assert json.loads(reply.body)["status"] in ("healthy", "degraded", "unhealthy")


def test_one_field_more_than_allowed_gets_431(server: Server) -> None:
    request = head_of_size(1024, *numbered_fields(MAX_HEADERS - 1))
    assert request.count(b": ") == MAX_HEADERS + 1
    reply, closed = exchange(server.port, request)

    assert reply.status == 431
    assert reply.error()["type"] == "invalid_request_error"
    assert closed
    assert f"more than {MAX_HEADERS} header fields (answered 431)" in server.proxy.output()


def test_trailers_over_the_byte_limit_get_431(server: Server) -> None:
    request = (
        head(
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
            request_line="POST /v1/messages HTTP/1.1",
        )
        + b"2\r\n{}\r\n0\r\n"
        + b"X-Trailer: "
        + b"t" * (3 * MAX_HEADER_BYTES)
        + b"\r\n\r\n"
    )
    reply, closed = exchange(server.port, request)

    assert reply.status == 431
    assert closed
    assert "of a body without data (trailers, extensions) (answered 431)" in server.proxy.output()


def test_pipelined_requests_are_each_served(server: Server) -> None:
    # Together larger than the limit, each under it: counted per request, not per read.
    first = head_of_size(MAX_HEADER_BYTES * 2 // 3)
    second = head_of_size(MAX_HEADER_BYTES * 2 // 3, "X-Second: yes")
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(first + second)
        replies = [read_reply(stream), read_reply(stream)]

    assert [reply.status in (200, 503) for reply in replies] == [True, True], replies


def test_twenty_megabytes_of_header_are_refused_after_a_small_fraction(server: Server) -> None:
    total = 20 * 1024 * 1024
    chunk = b"a" * 65536
    sent = 0
    refused = False
    # A small send buffer: what the client could send is what the server took in, give or take
    # the kernel's receive buffer on its side.
    with connect(server.port, send_buffer=65536) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        try:
            while sent < total:
                sent += sock.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            refused = True
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            answer = b""  # the reset may discard what was received before it

    print(f"\n20 MB header: the proxy closed the connection after {sent} bytes were sent")
    assert refused, f"all {sent} bytes were taken"
    assert sent < 2 * 1024 * 1024
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert f"head over {MAX_HEADER_BYTES} bytes (answered 431)" in server.proxy.output()


# --- timeouts -----------------------------------------------------------------------------------


def test_a_head_dribbled_slower_than_the_timeout_gets_408_and_is_closed_in_time(
    server: Server,
) -> None:
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        started = time.monotonic()
        dribble(sock, head("X-Slow: " + "s" * 100), 0.1, started + HEADER_TIMEOUT + MARGIN)
        reply = read_reply(stream)
        elapsed = time.monotonic() - started
        closed = is_closed(sock)

    print(f"\ndribbled head: 408 after {elapsed:.2f} s (timeout {HEADER_TIMEOUT} s)")
    assert reply.status == 408
    assert reply.error() == {"type": "invalid_request_error", "message": "Request Timeout."}
    assert closed
    assert HEADER_TIMEOUT - EARLY <= elapsed <= HEADER_TIMEOUT + MARGIN


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    with connect(server.port) as sock:
        started = time.monotonic()
        received = sock.recv(1024)
        elapsed = time.monotonic() - started

    assert received == b""
    assert HEADER_TIMEOUT - EARLY <= elapsed <= HEADER_TIMEOUT + MARGIN


def test_an_idle_kept_alive_connection_outlives_the_head_timeout(server: Server) -> None:
    # uvicorn's keep-alive timeout (5 s) governs the time between requests, not ours (1 s).
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(head())
        first = read_reply(stream)
        time.sleep(HEADER_TIMEOUT * 1.8)
        sock.sendall(head())
        second = read_reply(stream)

    assert first.status in (200, 503) and second.status in (200, 503)


def test_the_next_head_on_a_kept_alive_connection_is_timed_from_its_first_byte(
    server: Server,
) -> None:
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(head())
        read_reply(stream)
        time.sleep(HEADER_TIMEOUT * 1.5)
        first_byte = time.monotonic()
        dribble(sock, head("X-Slow: " + "s" * 100), 0.1, first_byte + HEADER_TIMEOUT + MARGIN)
        reply = read_reply(stream)
        elapsed = time.monotonic() - first_byte

    assert reply.status == 408
    assert HEADER_TIMEOUT - EARLY <= elapsed <= HEADER_TIMEOUT + MARGIN


def test_a_body_that_stalls_gets_408_and_is_closed(server: Server) -> None:
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(messages_head(1000) + b'{"model": ')
        started = time.monotonic()
        reply = read_reply(stream)
        elapsed = time.monotonic() - started
        closed = is_closed(sock)

    print(f"\nstalled body: 408 after {elapsed:.2f} s (window {BODY_TIMEOUT} s)")
    assert reply.status == 408
    assert reply.error()["type"] == "invalid_request_error"
    assert closed
    assert BODY_TIMEOUT - EARLY <= elapsed <= BODY_TIMEOUT + MARGIN
    assert "body bytes in 1 s, fewer than 200 (answered 408)" in server.proxy.output()


def test_a_body_trickling_in_below_the_minimum_rate_gets_408(server: Server) -> None:
    body = messages_body("fake-echo", "x" * 500)
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(messages_head(len(body), server.key))
        started = time.monotonic()
        # 10 bytes a second, never a pause as long as the window: a stall timer alone would
        # let this go on for a minute.
        dribble(sock, body, 0.1, started + BODY_TIMEOUT + MARGIN)
        reply = read_reply(stream)
        elapsed = time.monotonic() - started

    assert reply.status == 408
    assert elapsed <= BODY_TIMEOUT + MARGIN


def test_a_slow_body_above_the_minimum_rate_is_served(server: Server) -> None:
    text = "steady " * 400
    body = messages_body("fake-echo", text)
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(messages_head(len(body), server.key))
        started = time.monotonic()
        for offset in range(0, len(body), 100):  # about 1,000 bytes a second
            sock.sendall(body[offset : offset + 100])
            time.sleep(0.1)
        reply = read_reply(stream)
        elapsed = time.monotonic() - started

    assert elapsed > 2 * BODY_TIMEOUT  # it spanned several windows
    assert reply.status == 200, reply
    assert json.loads(reply.body)["content"][0]["text"] == echo_of(text)


# --- responses are never cut --------------------------------------------------------------------


def test_an_answer_that_starts_after_every_timeout_arrives_whole(server: Server) -> None:
    body = messages_body("fake-slow", "take your time")
    started = time.monotonic()
    reply, _ = exchange(server.port, messages_head(len(body), server.key) + body)
    elapsed = time.monotonic() - started

    assert elapsed > HEADER_TIMEOUT + BODY_TIMEOUT
    assert reply.status == 200, reply
    assert json.loads(reply.body)["content"][0]["text"] == echo_of("take your time")


def test_a_stream_longer_than_every_timeout_arrives_whole(server: Server) -> None:
    request = {
        "model": "fake-slow-stream",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "stream it slowly"}],
    }
    headers = {"x-api-key": server.key, "anthropic-version": "2023-06-01"}
    started = time.monotonic()
    with (
        httpx.Client(timeout=READ_TIMEOUT) as client,
        client.stream(
            "POST", f"{server.proxy.url}/v1/messages", json=request, headers=headers
        ) as r,
    ):
        raw = b"".join(r.iter_raw())
    elapsed = time.monotonic() - started

    assert r.status_code == 200
    assert elapsed > HEADER_TIMEOUT + BODY_TIMEOUT
    assert b"event: message_stop" in raw
    assert sse_text(raw.decode()) == echo_of("stream it slowly")


# --- body size ----------------------------------------------------------------------------------


def test_a_declared_body_of_ten_gigabytes_gets_413_before_a_few_kilobytes_are_sent(
    server: Server,
) -> None:
    piece = b"x" * 1024
    # The head and the first 4 KiB of the body in one write, as clients send them. No key: the
    # refusal comes before anything else.
    sent = 4 * len(piece)
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        started = time.monotonic()
        sock.sendall(messages_head(10 * 1000**3) + piece * 4)
        # Body bytes for as long as the proxy has not answered (a stop at 1 MiB, for a proxy
        # that would read on).
        while sent < 1024 * 1024 and not select.select([sock], [], [], 0.02)[0]:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        reply = read_reply(stream)
        elapsed = time.monotonic() - started
        closed = is_closed(sock)

    print(f"\n10 GB declared: 413 after {elapsed * 1000:.0f} ms and {sent} body bytes sent")
    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    assert reply.error() == {
        "type": "request_too_large",
        "message": "The request body is too large.",
    }
    assert closed
    assert sent <= 16 * 1024
    assert (
        f"a body of {10 * 1000**3} bytes declared, over {MAX_BODY_BYTES} (answered 413)"
        in server.proxy.output()
    )


def test_a_chunked_body_over_the_limit_gets_413(server: Server) -> None:
    body = messages_body("fake-echo", "c" * MAX_BODY_BYTES)
    reply, closed = exchange(server.port, chunked_messages_head(server.key) + chunked(body, 1000))

    assert reply.status == 413
    assert reply.error()["type"] == "request_too_large"
    assert closed
    assert f"a body over {MAX_BODY_BYTES} bytes (answered 413)" in server.proxy.output()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_served(server: Server, framing: str) -> None:
    text = "at the limit"
    bare = messages_body("fake-echo", text)
    # JSON allows any amount of white space at the end.
    body = bare + b" " * (MAX_BODY_BYTES - len(bare))
    assert len(body) == MAX_BODY_BYTES
    if framing == "chunked":
        request = chunked_messages_head(server.key) + chunked(body, 999)
    else:
        request = messages_head(len(body), server.key) + body

    reply, _ = exchange(server.port, request)

    assert reply.status == 200, reply
    assert json.loads(reply.body)["content"][0]["text"] == echo_of(text)


# --- upgrades -----------------------------------------------------------------------------------


def test_a_websocket_upgrade_is_answered_as_plain_http_and_the_connection_closed(
    server: Server,
) -> None:
    reply, closed = exchange(server.port, head(*WEBSOCKET_FIELDS))

    assert reply.status != 101
    assert reply.status in (200, 503), reply
    assert json.loads(reply.body)["status"] in ("healthy", "degraded", "unhealthy")
    assert "upgrade" not in reply.headers
    assert closed


def test_a_request_after_an_upgrade_request_s_head_is_never_served(server: Server) -> None:
    # httptools does not parse the body of a request that asks for an upgrade: read on, the
    # connection would take these bytes for a request of their own.
    hidden = head(request_line="GET /health?hidden=1 HTTP/1.1")
    upgrade = head(*WEBSOCKET_FIELDS, f"Content-Length: {len(hidden)}")
    with connect(server.port) as sock, sock.makefile("rb") as stream:
        sock.sendall(upgrade)
        time.sleep(0.2)  # a read of its own for the body
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered and closed
            sock.sendall(hidden)
        reply = read_reply(stream)
        closed = is_closed(sock)

    assert reply.status in (200, 503), reply
    assert closed, "a second answer came"
    assert "hidden=1" not in server.proxy.output()


def test_an_upgrade_request_is_held_to_the_same_limits(server: Server) -> None:
    too_long = head_of_size(MAX_HEADER_BYTES + 1, *WEBSOCKET_FIELDS)
    too_large = head(*WEBSOCKET_FIELDS, f"Content-Length: {MAX_BODY_BYTES + 1}")

    long_reply, long_closed = exchange(server.port, too_long)
    large_reply, large_closed = exchange(server.port, too_large)

    assert (long_reply.status, long_closed) == (431, True)
    assert (large_reply.status, large_closed) == (413, True)


# --- concurrency --------------------------------------------------------------------------------


def test_a_request_beyond_the_concurrency_cap_gets_503_and_is_closed(
    capped_server: Server,
) -> None:
    held = [connect(capped_server.port) for _ in range(MAX_CONCURRENCY)]
    try:
        # Each answered and kept alive (uvicorn closes an idle one after 5 s): all count.
        for sock in held:
            sock.sendall(head())
            with sock.makefile("rb") as stream:
                assert "status" in json.loads(read_reply(stream).body)

        refused, closed = exchange(capped_server.port, head())

        held.pop().close()
        served = None
        deadline = time.monotonic() + MARGIN
        while time.monotonic() < deadline:  # until the proxy has seen the close
            served, _ = exchange(capped_server.port, head())
            if served.status != 503 or "status" in json.loads(served.body):
                break
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()

    assert refused.status == 503
    assert refused.error() == {
        "type": "overloaded_error",
        "message": "The server is at capacity; retry later.",
    }
    assert closed
    assert served is not None and "status" in json.loads(served.body), served
    # Requests in progress: a task may outlive its answer by a moment.
    refusal = (
        rf"{MAX_CONCURRENCY + 1} connections and \d requests in progress, cap {MAX_CONCURRENCY}"
    )
    assert re.search(rf"{refusal} \(answered 503\)", capped_server.proxy.output())
