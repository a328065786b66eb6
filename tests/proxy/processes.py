"""Real processes for tests: uvicorn proxies on a prepared database, and a private redis-server.

A proxy runs as `python -m uvicorn config.asgi:application` with `make serve`'s bounded HTTP
protocol, in an environment built here from nothing (no setting leaks in from the test run), on
a SQLite file migrated by `manage.py`, with its stdout and stderr in a log file the test can
search. The private redis-server keeps an append-only file fsynced on every write, so it can be
stopped (SIGTERM) and started again on the same port with its data, or paused (SIGSTOP).
Everything listens on 127.0.0.1; the fixtures stop every process they started and remove every
file.

Also here, for the tests that drive these processes: generated sensitive values, requests in
a tagged form whose masked copy can be read back from the fake upstream, and a small load
generator (threads, one connection pool each).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

import httpx
import pytest
import redis

from tests.fakes.anthropic_upstream import ECHO_PREFIX, FakeAnthropic

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
# Throw-away secrets for throw-away processes: nothing here protects anything.
SECRET_KEY = "test-only-process-secret-key-never-deployed"
MASKING_KEY = "test-only-process-masking-key-never-deployed"
UPSTREAM_KEY = "sk-ant-upstream-process-test-key"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# The only variables a child inherits from the test run; every setting is set explicitly.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
REDIS_NEEDED = (
    "redis-server is needed: these tests stop, restart and pause a private Redis "
    "(install Debian's redis-server package)"
)

T = TypeVar("T")
R = TypeVar("R")


def free_port() -> int:
    """A port the kernel had free a moment ago (uvicorn and redis-server need a number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def _spawn(args: Sequence[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: stopping its group can never signal the test run.
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to the process group we created if it outstays STOP_TIMEOUT."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            _terminate(process)
            raise RuntimeError(f"{what} did not start; the end of its output:\n{tail(log)}")
        time.sleep(0.05)


def _base_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    # LiteLLM: no price-map download and no .env loading at import; logs line by line.
    env.update(LITELLM_OFFLINE_MODE="true", LITELLM_MODE="PRODUCTION", PYTHONUNBUFFERED="1")
    return env


# --- a private redis-server -------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free port, with its append-only file in `directory`."""

    def __init__(self, binary: str, directory: Path, *, extra_args: Sequence[str] = ()) -> None:
        self.binary = binary
        self.directory = directory
        self.extra_args = tuple(extra_args)  # e.g. ("--replicaof", HOST, "<port>")
        self.port = free_port()
        self.log = directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> None:
        """Start (again) on the same port and data directory; returns once it answers PING."""
        if self._process is not None:
            raise RuntimeError("this redis-server is already running")
        # Every write is fsynced before Redis answers it, so what a client saw written
        # survives a stop; no RDB snapshots; loopback only.
        args = [self.binary, "--bind", HOST, "--port", str(self.port), "--dir", str(self.directory)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        process = _spawn([*args, *self.extra_args], self.log, _base_env())
        _wait_until(self._answers, process, "the private redis-server", self.log)
        self._process = process

    def stop(self) -> None:
        """SIGTERM and wait for the exit: Redis closes its clients and flushes its AOF."""
        if self._process is None:
            return
        self.resume()  # a stopped process would not act on SIGTERM
        _terminate(self._process)
        self._process = None

    def kill(self) -> None:
        """SIGKILL and wait for the exit: what its replicas had not received is lost."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait(timeout=STOP_TIMEOUT)
        self._process = None
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel but nothing is answered."""
        if self._process is None:
            raise RuntimeError("this redis-server is not running")
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._process is not None and self._paused:
            self._process.send_signal(signal.SIGCONT)
        self._paused = False

    @contextlib.contextmanager
    def client(self, timeout: float = 5.0) -> Iterator[redis.Redis]:
        with redis.Redis(
            host=HOST, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        ) as client:
            yield client

    def dump(self) -> bytes:
        """Every key and every value this server holds, of any type, for leak searches."""
        with self.client() as client:
            return dump_keys(client, "*")

    def _answers(self) -> bool:
        try:
            with self.client(timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


class PrivateSentinel:
    """A `redis-server <conf> --sentinel` of our own on a free port, watching one master.

    Sentinel rewrites its configuration file as it learns: each one gets a file of its own.
    """

    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        service: str,
        master_port: int,
        quorum: int,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "sentinel.log"
        self.config = directory / "sentinel.conf"
        self.config.write_text(
            f"bind {HOST}\nport {self.port}\ndir {directory}\n"
            f"sentinel monitor {service} {HOST} {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {service} 1\n",
            encoding="utf-8",
        )
        self.service = service
        self._process: subprocess.Popen[bytes] | None = _spawn(
            [binary, str(self.config), "--sentinel"], self.log, _base_env()
        )
        _wait_until(self._answers, self._process, "a private redis sentinel", self.log)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def master(self) -> dict[str, Any]:
        """SENTINEL MASTER <service>: the master's address, flags, replicas and peers seen."""
        with redis.Redis(host=HOST, port=self.port, socket_timeout=5.0) as client:
            state: dict[str, Any] = client.sentinel_master(self.service)
        return state

    def stop(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            self._process = None

    def _answers(self) -> bool:
        try:
            with redis.Redis(host=HOST, port=self.port, socket_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


def dump_keys(client: redis.Redis, match: str) -> bytes:
    """The keys matching `match` and all their contents, as one byte string."""
    parts: list[bytes] = []
    for key in client.scan_iter(match=match, count=1000):
        parts.append(_raw(key))
        kind = _raw(client.type(key))
        if kind == b"string":
            parts.append(_raw(client.get(key) or b""))
        elif kind == b"hash":
            parts += [_raw(k) + b"=" + _raw(v) for k, v in client.hgetall(key).items()]
        elif kind == b"list":
            parts += [_raw(item) for item in client.lrange(key, 0, -1)]
        elif kind == b"set":
            parts += sorted(_raw(member) for member in client.smembers(key))
        elif kind == b"zset":
            parts += [_raw(member) for member in client.zrange(key, 0, -1)]
        else:
            parts.append(b"<" + kind + b">")
    return b"\n".join(parts)


def _raw(item: object) -> bytes:
    # redis-py types replies as bytes or str (decode_responses); these clients get bytes.
    return item if isinstance(item, bytes) else str(item).encode()


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    """A private redis-server for one test module (skipped where none is installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(REDIS_NEEDED)
    with tempfile.TemporaryDirectory(prefix="maskproxy-redis-") as directory:
        server = PrivateRedis(binary, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


# --- the database and the environment of the proxy processes ---------------------------------


@dataclass(frozen=True)
class Site:
    """What proxy processes share: a SQLite database, a Redis, the upstream, their settings."""

    directory: Path
    redis_url: str
    redis_key_prefix: str
    upstream_url: str
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def database(self) -> Path:
        return self.directory / "proxy.sqlite3"

    def env(self) -> dict[str, str]:
        env = _base_env()
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=f"sqlite:///{self.database}",
            REDIS_URL=self.redis_url,
            REDIS_KEY_PREFIX=self.redis_key_prefix,
            PROXY_UPSTREAM_BASE_URL=self.upstream_url,
            PROXY_UPSTREAM_TIMEOUT="30",
            ANTHROPIC_API_KEY=UPSTREAM_KEY,
            SECRET_KEY=SECRET_KEY,
            MASKING_KEY=MASKING_KEY,
            # Load tests send more than a key's default share.
            PROXY_DEFAULT_RATE_LIMIT_PER_MINUTE="0",
            PROXY_DEFAULT_MAX_CONCURRENT_STREAMS="0",
            PROXY_KEY_CPU_SECONDS_PER_MINUTE="0",
        )
        env.update(self.settings)
        return env

    def manage(self, *args: str) -> str:
        """Run a manage.py command in this site's environment; its stdout."""
        # --skip-checks: the system checks import the URLconf and with it LiteLLM (3 s); the
        # commands used here need neither.
        done = subprocess.run(
            [sys.executable, "manage.py", *args, "--skip-checks"],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=START_TIMEOUT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def create_api_key(self, name: str, namespace: str) -> str:
        """A new proxy key in `namespace` (create_api_key prints it on its last line)."""
        return self.manage("create_api_key", name, "--namespace", namespace).splitlines()[-1]

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a query on the site's database, as the processes wrote it."""
        # Not mode=ro: a read-only connection cannot open a WAL database whose -shm file is
        # gone (the settings may turn WAL on). Only SELECTs are run here.
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql)]

    def audit_rows(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM proxy_auditrecord ORDER BY id")

    def wait_for_audit(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The audit rows once `count` exist: the processes write them in the background."""
        deadline = time.monotonic() + timeout
        rows = self.audit_rows()
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = self.audit_rows()
        return rows

    def database_dump(self) -> str:
        """Every row of every table, as text, for leak searches."""
        tables = self.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        lines = []
        for table in tables:
            name = str(table["name"]).replace('"', '""')
            lines += [f"{name}: {row!r}" for row in self.query(f'SELECT * FROM "{name}"')]  # noqa: S608
        return "\n".join(lines)


def prepare_site(
    directory: Path, *, redis_url: str, redis_key_prefix: str, upstream_url: str, **settings: str
) -> Site:
    """A migrated database (the migration seeds the default pattern library) in directory."""
    site = Site(directory, redis_url, redis_key_prefix, upstream_url, dict(settings))
    site.manage("migrate", "--noinput")
    return site


# --- proxy processes ---------------------------------------------------------------------------


class ProxyProcess:
    """One `uvicorn config.asgi:application` process (with workers > 1: a master and workers)."""

    def __init__(
        self,
        site: Site,
        *,
        name: str,
        workers: int = 1,
        lifespan: str = "off",
        grace_seconds: int = 5,
    ) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.workers = workers
        self.log = site.directory / f"proxy-{name}.log"
        args = [sys.executable, "-m", "uvicorn", "config.asgi:application"]
        args += ["--host", HOST, "--port", str(self.port), "--lifespan", lifespan]
        args += ["--http", "config.http:BoundedHttpProtocol", "--ws", "none"]  # as make serve
        args += ["--log-level", "info", "--timeout-graceful-shutdown", str(grace_seconds)]
        if workers > 1:
            args += ["--workers", str(workers)]
        self._process: subprocess.Popen[bytes] | None = _spawn(args, self.log, site.env())

    def wait_ready(self) -> None:
        """Return once /health answers 200 (and, with workers, every worker has started)."""
        process = self._process
        if process is None:
            raise RuntimeError("this proxy was stopped")

        def ready() -> bool:
            started = self.output().count("Started server process")
            return started >= self.workers and self.health() == 200

        _wait_until(ready, process, f"the proxy on port {self.port}", self.log)

    def health(self) -> int | None:
        try:
            return httpx.get(f"{self.url}/health", timeout=5.0).status_code
        except httpx.HTTPError:
            return None

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            self._process = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("this proxy was stopped")
        return self._process.pid

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the uvicorn process (with workers, the master), not its group."""
        if self._process is None:
            raise RuntimeError("this proxy was stopped")
        self._process.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status once the process has ended by itself; None if it still runs."""
        if self._process is None:
            raise RuntimeError("this proxy was stopped")
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def group_running(self) -> list[int]:
        """The processes of its group (the master, workers, helpers) that have not exited."""
        return running_in_group(self.pid)


def running_in_group(pgid: int) -> list[int]:
    """Processes of the group (a session _spawn started) that have not exited.

    Zombies are left out: a helper that exits after the master (multiprocessing's resource
    tracker does) goes to init, which may take a moment to reap it.
    """
    running = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            running.append(int(entry.name))
    return running


@contextlib.contextmanager
def running_proxies(
    site: Site, count: int = 1, *, workers: int = 1
) -> Iterator[list[ProxyProcess]]:
    """`count` proxy processes on one site, started side by side, stopped on exit."""
    proxies: list[ProxyProcess] = []
    try:
        for number in range(count):
            proxies.append(ProxyProcess(site, name=str(number), workers=workers))
        for proxy in proxies:
            proxy.wait_ready()
        yield proxies
    finally:
        for proxy in proxies:
            proxy.stop()


@pytest.fixture(scope="module")
def site_directory() -> Iterator[Path]:
    """A temporary directory for one module's database and process logs, removed after."""
    with tempfile.TemporaryDirectory(prefix="maskproxy-site-") as directory:
        yield Path(directory)


# --- sensitive values, tagged requests and replies ---------------------------------------------

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
