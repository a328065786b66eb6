"""Traffic for the real-process suites: generated sensitive values, requests in a tagged form
whose masked copy can be read back from the fake upstream, and a small load generator
(threads, one connection pool each)."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

import httpx

from tests.support.fakes.anthropic_upstream import ECHO_PREFIX, FakeAnthropic

T = TypeVar("T")
R = TypeVar("R")

_HEX = "0123456789abcdef"
_KEY_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# The prefix of the placeholders each generated kind gets from the default library.
PLACEHOLDER_PREFIXES = {
    "ec2": "AWS_EC2",
    "vpc": "AWS_VPC",
    "ip": "PUBLIC_IP",
    "access_key": "AWS_ACCESS_KEY",
}
PLACEHOLDER_RE = re.compile(r"(?P<prefix>[A-Z][A-Z0-9_]*)_[0-9]{3,}\Z")
_BRACKETED = re.compile(r"\[([^\]]*)\]")


class ValueFactory:
    """Random sensitive values the default library masks, never the same one twice."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._issued: set[str] = set()

    def ec2_id(self) -> str:
        return self._new(lambda: "i-" + self._hex(17))

    def vpc_id(self) -> str:
        return self._new(lambda: "vpc-" + self._hex(8))

    def public_ip(self) -> str:
        # 54.0.0.0/8 is Amazon's and public; the last octet avoids .0 and .255.
        return self._new(lambda: f"54.{self._octet()}.{self._octet()}.{self._rng.randint(1, 254)}")

    def access_key_id(self) -> str:
        return self._new(lambda: "AKIA" + "".join(self._rng.choices(_KEY_CHARACTERS, k=16)))

    def kinds(self) -> dict[str, Callable[[], str]]:
        return {
            "ec2": self.ec2_id,
            "vpc": self.vpc_id,
            "ip": self.public_ip,
            "access_key": self.access_key_id,
        }

    def mixed(self, count: int) -> list[str]:
        """`count` new values, cycling through the kinds."""
        makers = list(self.kinds().values())
        return [makers[n % len(makers)]() for n in range(count)]

    def _new(self, make: Callable[[], str]) -> str:
        while True:
            value = make()
            if value not in self._issued:
                self._issued.add(value)
                return value

    def _hex(self, length: int) -> str:
        return "".join(self._rng.choices(_HEX, k=length))

    def _octet(self) -> int:
        return self._rng.randint(0, 255)


def kind_of(value: str) -> str:
    if value.startswith("i-"):
        return "ec2"
    if value.startswith("vpc-"):
        return "vpc"
    if value.startswith("AKIA"):
        return "access_key"
    return "ip"


def tagged_text(tag: str, values: Sequence[str]) -> str:
    """'<tag>: [v1] [v2] ...': the masked copy shows each value's placeholder in its place."""
    return f"{tag}: " + " ".join(f"[{value}]" for value in values)


@dataclass(frozen=True)
class Job:
    """One request: '<tag>: [v1] [v2] ...' (see tagged_text); maybe streamed."""

    tag: str
    values: tuple[str, ...]
    stream: bool = False

    @property
    def text(self) -> str:
        return tagged_text(self.tag, self.values)


def bracketed(text: str) -> list[str]:
    """What stands between brackets in a tagged text, in order."""
    return _BRACKETED.findall(text)


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
    return ""


def last_user_text(body: Mapping[str, Any] | None) -> str:
    messages = body.get("messages") if body else None
    users = [m for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
    return _text_of(users[-1].get("content")) if users else ""


def forwarded_texts(upstream: FakeAnthropic) -> dict[str, list[str]]:
    """tag -> the masked texts the upstream received under that tag (one per forward)."""
    found: dict[str, list[str]] = {}
    for request in upstream.requests:
        tag, _, rest = last_user_text(request.json).partition(": ")
        found.setdefault(tag, []).append(rest)
    return found


@dataclass(frozen=True)
class Reply:
    """What a client got: status, JSON body (None for a stream), the assistant's text, timing."""

    status: int
    payload: dict[str, Any] | None
    text: str
    raw: str
    started: float
    finished: float

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def sse_text(raw: str) -> str:
    """The text deltas of an SSE body, joined."""
    pieces = []
    for line in raw.splitlines():
        if line.startswith("data: "):
            event = json.loads(line[len("data: ") :])
            delta = event.get("delta") or {}
            if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
                pieces.append(delta["text"])
    return "".join(pieces)


def post_message(
    client: httpx.Client,
    base_url: str,
    key: str,
    messages: list[dict[str, Any]],
    *,
    stream: bool = False,
    path: str = "/v1/messages",
    model: str = "fake-echo",
) -> Reply:
    """POST a Messages (or count_tokens) request and read the whole answer."""
    body: dict[str, Any] = {"model": model, "messages": messages}
    if path == "/v1/messages":
        body["max_tokens"] = 512
        if stream:
            body["stream"] = True
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    started = time.monotonic()
    response = client.post(f"{base_url}{path}", json=body, headers=headers)
    finished = time.monotonic()
    raw = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return Reply(response.status_code, None, sse_text(raw), raw, started, finished)
    payload = response.json()
    content = payload.get("content") if isinstance(payload, dict) else None
    return Reply(response.status_code, payload, _text_of(content), raw, started, finished)


def echo_of(text: str) -> str:
    """What fake-echo answers, once the proxy has restored every value."""
    return ECHO_PREFIX + text


def run_clients(
    jobs: Sequence[T],
    send: Callable[[httpx.Client, T], R],
    *,
    clients: int,
    midway: tuple[int, Callable[[], None]] | None = None,
) -> list[R]:
    """Send every job from `clients` threads (one connection pool each); results in job order.

    With midway=(n, action), `action` runs in the calling thread once n results are in,
    while the clients keep sending.
    """
    queue: SimpleQueue[int] = SimpleQueue()
    for index in range(len(jobs)):
        queue.put(index)
    results: dict[int, R] = {}
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client(timeout=60.0) as client:
            while True:
                try:
                    index = queue.get_nowait()
                except Empty:
                    return
                result = send(client, jobs[index])
                with lock:
                    results[index] = result

    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="load-client") as pool:
        futures = [pool.submit(client_loop) for _ in range(clients)]
        if midway is not None:
            after, action = midway
            while len(results) < after and not all(f.done() for f in futures):
                time.sleep(0.005)
            action()
        for future in futures:
            future.result()  # re-raises a client's exception
    return [results[index] for index in range(len(jobs))]
