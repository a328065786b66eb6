"""Proxies as real processes: uvicorn on a prepared SQLite database, as `make serve` runs it.

A proxy runs as `python -m uvicorn config.asgi:application` with `make serve`'s bounded HTTP
protocol, in an environment built here from nothing (no setting leaks in from the test run), on
a SQLite file migrated by `manage.py`, with its stdout and stderr in a log file the test can
search. Everything listens on 127.0.0.1; the caller stops every process it started.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.constants import (
    HOST,
    PROCESS_MASKING_KEY,
    PROCESS_SECRET_KEY,
    PROCESS_UPSTREAM_KEY,
)
from tests.support.processes import (
    ROOT,
    START_TIMEOUT,
    base_env,
    free_port,
    running_in_group,
    spawn,
    terminate,
    wait_until,
)


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
        env = base_env()
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=f"sqlite:///{self.database}",
            REDIS_URL=self.redis_url,
            REDIS_KEY_PREFIX=self.redis_key_prefix,
            PROXY_UPSTREAM_BASE_URL=self.upstream_url,
            PROXY_UPSTREAM_TIMEOUT="30",
            ANTHROPIC_API_KEY=PROCESS_UPSTREAM_KEY,
            SECRET_KEY=PROCESS_SECRET_KEY,
            MASKING_KEY=PROCESS_MASKING_KEY,
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
        self._process: subprocess.Popen[bytes] | None = spawn(args, self.log, site.env())

    def wait_ready(self) -> None:
        """Return once /health answers 200 (and, with workers, every worker has started)."""
        process = self._process
        if process is None:
            raise RuntimeError("this proxy was stopped")

        def ready() -> bool:
            started = self.output().count("Started server process")
            return started >= self.workers and self.health() == 200

        wait_until(ready, process, f"the proxy on port {self.port}", self.log)

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
            terminate(self._process)
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
