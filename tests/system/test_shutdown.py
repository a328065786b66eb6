"""Serving and graceful shutdown, with real processes, real HTTP and real signals.

Each test starts its own uvicorn process (or `make serve`) with the lifespan on, on one
migrated SQLite database and the test Redis under a fresh key prefix, in front of the fake
Anthropic server; opens a stream that lasts a couple of seconds (``fake-slow-stream``) or
stalls (``fake-stall-midstream``); sends SIGTERM while it runs; and then checks what a new
client gets, how the stream ends, the audit row and how long the process takes to exit.
Times are printed, and asserted only against generous bounds. `make serve` is also run
without a secret key and on a database that was never migrated: it must refuse to start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from tests.support.constants import HOST
from tests.support.fakes.anthropic_upstream import DELTAS_BEFORE_FAILURE, FakeAnthropic
from tests.support.processes import ROOT, free_port, running_in_group, tail
from tests.support.sites import ProxyProcess, Site, prepare_site
from tests.support.traffic import ValueFactory, echo_of, sse_text, tagged_text

pytestmark = [pytest.mark.slow, pytest.mark.redis]

# make serve's default; the stream of fake-slow-stream takes about 2 s of it.
PRODUCTION_GRACE_SECONDS = 30
SHORT_GRACE_SECONDS = 1
# Generous bounds for a loaded 2-core machine: start-up imports LiteLLM (several seconds).
START_SECONDS = 90.0
STREAM_SECONDS = 30.0
# After the grace period: the cancelled requests, the audit flush and closing the clients.
EXIT_MARGIN_SECONDS = 15.0


@dataclass(frozen=True)
class Setup:
    site: Site
    key: str
    upstream: FakeAnthropic


@pytest.fixture(scope="module")
def setup(
    site_directory: Path,
    fake_anthropic: FakeAnthropic,
    redis_client: redis.Redis,
) -> Iterator[Setup]:
    # Under the run's own prefix: the shared Redis is never flushed, only these keys go.
    prefix = f"{settings.CACHES['default']['KEY_PREFIX']}:shutdown-{uuid.uuid4().hex[:8]}"
    site = prepare_site(
        site_directory,
        redis_url=str(settings.CACHES["default"]["LOCATION"]),
        redis_key_prefix=prefix,
        upstream_url=fake_anthropic.base_url,
        LOG_LEVEL="INFO",
    )
    try:
        yield Setup(site, site.create_api_key("shutdown", "shutdown"), fake_anthropic)
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
            redis_client.delete(key)


class StreamInFlight:
    """A streaming Messages request read in a thread of its own, so the test can act meanwhile."""

    def __init__(self, url: str, key: str, text: str, model: str) -> None:
        self._url, self._key, self._text, self._model = url, key, text, model
        self.raw = b""
        self.status: int | None = None
        self.request_id = ""
        self.error: httpx.HTTPError | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self.first_deltas = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._read, name="stream-in-flight", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        body = {
            "model": self._model,
            "max_tokens": 512,
            "stream": True,
            "messages": [{"role": "user", "content": self._text}],
        }
        headers = {"x-api-key": self._key, "anthropic-version": "2023-06-01"}
        try:
            with (
                httpx.Client(timeout=STREAM_SECONDS * 2) as client,
                client.stream("POST", f"{self._url}/v1/messages", json=body, headers=headers) as r,
            ):
                self.status, self.request_id = r.status_code, r.headers.get("request-id", "")
                for chunk in r.iter_raw():
                    self.raw += chunk
                    if self.raw.count(b"event: content_block_delta") >= DELTAS_BEFORE_FAILURE:
                        self.first_deltas.set()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.finished = time.monotonic()
            self.done.set()

    @property
    def text(self) -> str:
        return sse_text(self.raw.decode(errors="replace"))

    @property
    def complete(self) -> bool:
        return b"event: message_stop" in self.raw

    def wait_first_deltas(self, log: Path) -> None:
        if not self.first_deltas.wait(STREAM_SECONDS):
            raise AssertionError(
                f"no deltas after {STREAM_SECONDS}s: {self.error!r} {self.raw!r}\n{tail(log, 60)}"
            )

    def wait_done(self) -> None:
        if not self.done.wait(STREAM_SECONDS):
            raise AssertionError(f"the stream did not end within {STREAM_SECONDS}s")


def new_client_outcome(url: str) -> str:
    """What a client connecting now gets: 'refused', 'no answer' or the status of /health."""
    try:
        response = httpx.get(f"{url}/health", timeout=1.0)
    except httpx.ConnectError:
        return "refused"
    except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
        # Accepted by the kernel (a listening socket still open somewhere) but not served.
        return "no answer"
    return str(response.status_code)


def wait_until_not_served(url: str, timeout: float = 10.0) -> tuple[str, float]:
    """Poll with new connections until one is not served: its outcome and when it was opened."""
    deadline = time.monotonic() + timeout
    while True:
        opened = time.monotonic()
        outcome = new_client_outcome(url)
        if outcome != "200" or opened > deadline:
            return outcome, opened
        time.sleep(0.02)


def audit_row(site: Site, request_id: str) -> dict[str, Any] | None:
    rows = [row for row in site.audit_rows() if row["request_id"] == request_id]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def wait_for_group_exit(pgid: int, timeout: float = 10.0) -> list[int]:
    """The processes of the group still running once all have exited, or after timeout."""
    deadline = time.monotonic() + timeout
    while (running := running_in_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running


def proxy_started(site: Site, name: str, *, workers: int = 1, grace: int) -> ProxyProcess:
    proxy = ProxyProcess(site, name=name, workers=workers, lifespan="on", grace_seconds=grace)
    proxy.wait_ready()
    return proxy


# --- a stream that ends within the grace period -----------------------------------------------


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_sigterm_lets_the_running_stream_finish_and_writes_its_audit_row(
    setup: Setup, workers: int
) -> None:
    site = setup.site
    values = ValueFactory(seed=800 + workers).mixed(4)
    text = tagged_text(f"graceful {workers}", values)
    rows_before = len(site.audit_rows())
    proxy = proxy_started(
        site, f"graceful-{workers}", workers=workers, grace=PRODUCTION_GRACE_SECONDS
    )
    try:
        stream = StreamInFlight(proxy.url, setup.key, text, "fake-slow-stream")
        stream.wait_first_deltas(proxy.log)

        signalled = time.monotonic()
        proxy.send_signal(signal.SIGTERM)
        outcome, not_served_at = wait_until_not_served(proxy.url)
        stream.wait_done()
        status = proxy.wait_exit(timeout=PRODUCTION_GRACE_SECONDS + EXIT_MARGIN_SECONDS)
        exited = time.monotonic()
        left_running = wait_for_group_exit(proxy.pid)
        rows = site.audit_rows()
        row = audit_row(site, stream.request_id)
        log = proxy.output()
    finally:
        proxy.stop()

    assert stream.finished is not None
    print(
        f"\n{workers} worker(s), SIGTERM mid-stream: new clients {outcome!r} after "
        f"{not_served_at - signalled:.2f} s; the stream ended {stream.finished - signalled:.2f} s "
        f"after the signal ({stream.finished - stream.started:.2f} s in all); the process exited "
        f"{exited - signalled:.2f} s after the signal with status {status}; audit rows written: "
        f"{len(rows) - rows_before}"
    )
    # New clients are not served once the signal is seen, while the stream still runs: with
    # one process the listening socket is closed; with workers the master keeps it open until
    # it exits, so a new connection waits unanswered.
    assert outcome in (("refused",) if workers == 1 else ("refused", "no answer")), outcome
    assert not_served_at < stream.finished, (
        "the stream had ended before new clients were not served"
    )
    # The stream ran to its end, values restored.
    assert (stream.status, stream.error) == (200, None)
    assert stream.complete, stream.raw[-300:]
    assert stream.text == echo_of(text)
    # The process exited by itself, well before the grace period, and left no worker behind.
    assert status in (0, -signal.SIGTERM), tail(proxy.log)
    assert exited - signalled < PRODUCTION_GRACE_SECONDS
    assert left_running == []
    # Its audit record was in the database when the process was gone.
    assert row is not None, tail(proxy.log)
    assert (row["status"], row["error_type"], row["stream"]) == (200, "", 1)
    assert (row["masked_total"], row["restored_total"]) == (len(values), len(values))
    assert len(rows) - rows_before == 1
    assert log.count("Application shutdown complete") == workers, log
    assert "Exception in ASGI application" not in log
    assert "audit records still unwritten" not in log


# --- a stream that outlasts the grace period --------------------------------------------------


@pytest.mark.parametrize("model", ["fake-stall-midstream", "fake-slow-stream-long"])
def test_stream_longer_than_the_grace_period_is_cut_and_still_audited(
    setup: Setup, model: str
) -> None:
    site = setup.site
    upstream = setup.upstream
    values = ValueFactory(seed=900 + len(model)).mixed(3)
    text = tagged_text(f"cut {model}", values)
    rows_before = len(site.audit_rows())
    abandoned_before = upstream.abandoned
    proxy = proxy_started(site, f"cut-{model}", grace=SHORT_GRACE_SECONDS)
    try:
        stream = StreamInFlight(proxy.url, setup.key, text, model)
        stream.wait_first_deltas(proxy.log)

        signalled = time.monotonic()
        proxy.send_signal(signal.SIGTERM)
        status = proxy.wait_exit(timeout=SHORT_GRACE_SECONDS + EXIT_MARGIN_SECONDS)
        exited = time.monotonic()
        stream.wait_done()
        rows = site.audit_rows()
        row = audit_row(site, stream.request_id)
        log = proxy.output()
    finally:
        proxy.stop()

    assert stream.finished is not None
    ending = type(stream.error).__name__ if stream.error else "no error"
    print(
        f"\n{model}, grace {SHORT_GRACE_SECONDS} s: the process exited {exited - signalled:.2f} s "
        f"after SIGTERM with status {status}; the client's stream ended "
        f"{stream.finished - signalled:.2f} s after it ({ending}); "
        f"audit rows written: {len(rows) - rows_before}, this one: "
        f"{(row['status'], row['error_type']) if row else None}"
    )
    assert status in (0, -signal.SIGTERM), tail(proxy.log)
    assert exited - signalled < SHORT_GRACE_SECONDS + EXIT_MARGIN_SECONDS
    # The client got part of the stream, never a false end.
    assert stream.status == 200
    assert not stream.complete
    assert stream.text and echo_of(text).startswith(stream.text)
    # The cut stream has its row, as a client that went away (the server cut it, not the
    # provider).
    assert row is not None, log[-3000:]
    assert (row["status"], row["error_type"], row["stream"]) == (499, "client_closed", 1)
    assert len(rows) - rows_before == 1
    # The proxy let go of the provider's stream; nothing was left running on its own.
    assert upstream.abandoned >= abandoned_before + 1
    assert "timeout graceful shutdown exceeded" in log
    assert "Task exception was never retrieved" not in log
    assert "still running after" not in log
    assert "audit records still unwritten" not in log


# --- make serve, the production entry point ----------------------------------------------------


def make_serve_env(site: Site, run_dir: Path, **settings: str) -> dict[str, str]:
    # The site's settings (its own SECRET_KEY among them), and where make serve listens. A
    # RUN_DIR of the test's own: make would put a generated secret there.
    env = site.env()
    env.update(HOST=HOST, PORT=str(free_port()), RUN_DIR=str(run_dir), DJANGO_DEBUG="false")
    env.update(settings)
    return env


def make_serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    make = shutil.which("make")
    if make is None:
        pytest.skip("GNU make is needed to run make serve")
    # -o: never reinstall the virtualenv from here, even if requirements changed meanwhile.
    args = [make, "--no-print-directory", "-o", ".venv/.installed", "serve"]
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def command_lines(pgid: int) -> list[list[str]]:
    lines = []
    for pid in running_in_group(pgid):
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            lines.append([part.decode() for part in raw.split(b"\0") if part])
    return lines


def test_make_serve_refuses_to_start_without_a_secret_key(setup: Setup, tmp_path: Path) -> None:
    env = make_serve_env(setup.site, tmp_path / "run")
    del env["SECRET_KEY"]
    log = tmp_path / "make-serve.log"

    process = make_serve(env, log)
    status = process.wait(timeout=START_SECONDS)

    output = log.read_text()
    assert status != 0, output
    assert "make serve: set SECRET_KEY or SECRET_KEY_FILE" in output
    assert "uvicorn" not in output.lower()
    # Unlike make run, it generated no development secret.
    assert not (tmp_path / "run" / "secret_key").exists()


def test_make_serve_refuses_a_database_with_unapplied_migrations(
    setup: Setup, tmp_path: Path
) -> None:
    env = make_serve_env(setup.site, tmp_path / "run")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}"
    log = tmp_path / "make-serve.log"

    process = make_serve(env, log)
    status = process.wait(timeout=START_SECONDS)

    output = log.read_text()
    assert status != 0, output
    assert "make serve: the database has unapplied migrations" in output
    assert "Started server process" not in output


def test_make_serve_runs_workers_serves_static_files_and_stops_on_sigterm(
    setup: Setup, tmp_path: Path
) -> None:
    site = setup.site
    env = make_serve_env(setup.site, tmp_path / "run", WORKERS="2", SHUTDOWN_GRACE_SECONDS="10")
    url = f"http://{HOST}:{env['PORT']}"
    log = tmp_path / "make-serve.log"
    values = ValueFactory(seed=1000).mixed(2)
    text = tagged_text("make serve", values)
    rows_before = len(site.audit_rows())

    process = make_serve(env, log)
    try:
        _wait_for_two_workers(process, log, url)
        server = next(
            line for line in command_lines(process.pid) if "python:config.serving" in line
        )
        css = httpx.get(f"{url}/static/admin/css/base.css", timeout=10.0)
        oversized_head = _status_of_raw_request(int(env["PORT"]), b"a" * 70_000)

        stream = StreamInFlight(url, setup.key, text, "fake-slow-stream")
        stream.wait_first_deltas(log)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)  # to make, as a service manager would
        stream.wait_done()
        status = process.wait(timeout=10 + EXIT_MARGIN_SECONDS)
        exited = time.monotonic()
        left_running = wait_for_group_exit(process.pid)
        row = audit_row(site, stream.request_id)
        output = log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    print(
        f"\nmake serve, 2 workers: SIGTERM to make mid-stream; the stream ended "
        f"{stream.finished - signalled if stream.finished else float('nan'):.2f} s and make "
        f"exited {exited - signalled:.2f} s after it (status {status}); audit rows written: "
        f"{len(site.audit_rows()) - rows_before}"
    )
    # gunicorn forks the workers from a master that imported the application, with
    # config/serving.py's uvicorn settings (tests/test_serving.py); here the bounded HTTP
    # protocol shows: a head over HTTP_MAX_HEADER_BYTES gets a 431.
    assert "gunicorn" in " ".join(server) and "-c python:config.serving" in " ".join(server)
    assert oversized_head == b"431"
    # Static files come from the apps' directories (ServeStatic through the finders) with
    # DEBUG off: collectstatic is not needed.
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "DJANGO Admin styles" in css.text
    assert '"GET /static/admin/css/base.css' not in output, "an access log line"
    # make passed SIGTERM on: the stream finished, the workers and the master exited.
    assert stream.complete and stream.text == echo_of(text)
    assert status is not None
    assert left_running == []
    assert output.count("Application shutdown complete") == 2, output
    assert row is not None and (row["status"], row["restored_total"]) == (200, len(values))


def _wait_for_two_workers(process: subprocess.Popen[bytes], log: Path, url: str) -> None:
    """Until both workers have started and a new client is served (make must not exit)."""
    deadline = time.monotonic() + START_SECONDS
    while not (
        log.read_text(errors="replace").count("Started server process") == 2
        and new_client_outcome(url) == "200"
    ):
        assert process.poll() is None and time.monotonic() < deadline, tail(log)
        time.sleep(0.1)


def _status_of_raw_request(port: int, header_value: bytes) -> bytes:
    """The status code a raw request with one header of this value gets."""
    with socket.create_connection((HOST, port), timeout=10.0) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: proxy\r\nX-Big: " + header_value)
        connection.sendall(b"\r\n\r\n")
        return connection.recv(64).split(b" ")[1]
