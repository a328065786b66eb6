"""The processes behind the end-to-end benchmarks, started on 127.0.0.1 and stopped at the end.

A private redis-server on a free port (never the shared one), a temporary SQLite database
migrated with manage.py and its API keys, the fake upstream (bench/fake_upstream.py) and the
proxy as real `uvicorn config.asgi:application` processes with 1 or 2 workers, and a
direct LiteLLM client (bench/direct_client.py). Each starts on first use and is shared by
the benchmarks of one run; everything lives in one temporary directory. Ports, spawning,
stopping and the private redis-server are the tests' own (tests/support/processes.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from tests.support.constants import HOST
from tests.support.processes import (
    ROOT,
    PrivateRedis,
    base_env,
    free_port,
    spawn,
    tail,
    terminate,
    wait_until,
)

PYTHON = sys.executable
NAMESPACE = "bench"
REDIS_KEY_PREFIX = "bench"
# Throw-away values for throw-away processes: nothing here protects anything.
BENCH_SECRET = "bench-only-secret-key-never-deployed"  # noqa: S105
BENCH_MASKING_SECRET = "bench-only-masking-key-never-deployed"  # noqa: S105
UPSTREAM_CREDENTIAL = "sk-ant-bench-dummy"
START_TIMEOUT = 90.0
# The benchmarks' processes run in the caller's whole environment (base_env(inherit=None)),
# but for these settings the proxy reads, which must not leak in from it.
_CLEARED = (
    "SECRET_KEY_FILE",
    "MASKING_KEY_FILE",
    "ANTHROPIC_API_KEY_FILE",
    "PROXY_MASTER_KEY",
    "PROXY_MASTER_KEY_FILE",
    "LITELLM_MASTER_KEY",
    "LITELLM_MASTER_KEY_FILE",
    "METRICS_TOKEN",
    "METRICS_TOKEN_FILE",
    "HEALTH_REQUIRES_KEY",
    "PROMETHEUS_MULTIPROC_DIR",
    "DJANGO_DEBUG",
    "LOG_FORMAT",
)


class Unavailable(Exception):
    """A process a benchmark needs cannot be had here; the message says how to fix it."""


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return True


@dataclass
class Proxy:
    """A running proxy: its URL, the uvicorn process and the pids of its workers."""

    process: subprocess.Popen[bytes]
    url: str
    workers: int
    log: Path

    @property
    def pid(self) -> int:
        """The serving process of a one-worker proxy (uvicorn without --workers)."""
        if self.workers != 1:
            raise ValueError("a proxy with several workers serves from several processes")
        return self.process.pid


def pss_kib(pid: int) -> int:
    """Proportional set size of a process (its private pages and its share of the shared
    ones), in KiB; 0 for a process that has ended."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    """A process and its descendants alive now."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += process_tree(int(child))
    return found


def rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class DirectClient:
    """bench/direct_client.py in its own process: LiteLLM straight to the fake upstream."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    def call(self, **command: Any) -> dict[str, Any]:
        stdin, stdout = self._pipes()
        stdin.write(json.dumps(command).encode() + b"\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError("the direct LiteLLM client stopped")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"direct LiteLLM client: {answer['error']}")
        return answer

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        if self._process.stdin is None or self._process.stdout is None:
            raise RuntimeError("the direct client has no pipes")
        return self._process.stdin, self._process.stdout


class Harness:
    """Starts what the benchmarks ask for, once per run, and stops it all on exit."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._tmp: Path | None = None
        self._redis: PrivateRedis | None = None
        self._upstreams: dict[str, str] = {}
        # Settings a benchmark adds to the proxy's environment (before it starts the proxy).
        self.extra_env: dict[str, str] = {}
        self._migrated = False
        self._api_key: str | None = None
        self._proxies: dict[int, Proxy] = {}
        self._direct: DirectClient | None = None
        self._floor: Proxy | None = None

    def __enter__(self) -> Harness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()

    @property
    def tmp(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory("-bench")))
        return self._tmp

    # --- Redis -----------------------------------------------------------------------------

    def redis(self) -> PrivateRedis:
        if self._redis is None:
            binary = shutil.which("redis-server")
            if binary is None:
                raise Unavailable("redis-server is not installed: run scripts/ensure-redis")
            # No persistence: the benchmarks measure the proxy, not Redis's disk.
            private = PrivateRedis(binary, self.tmp, persistent=False)
            private.start()
            self._stack.callback(private.stop)
            self._redis = private
        return self._redis

    # --- the fake upstream -----------------------------------------------------------------

    def upstream_url(self, name: str = "main") -> str:
        """A fake upstream process; each name its own (a benchmark's tenants need not queue
        behind one another at a provider that, in reality, is not one process)."""
        if name not in self._upstreams:
            port = free_port()
            log = self.tmp / f"upstream-{name}.log"
            process = spawn(
                [PYTHON, "-m", "uvicorn", "bench.fake_upstream:app", *_uvicorn_flags(port)],
                log,
                env=base_env(inherit=None),
            )
            self._stack.callback(terminate, process)
            url = f"http://{HOST}:{port}"
            wait_until(
                lambda: _answers(url),
                process,
                f"the fake upstream {name}",
                log,
                timeout=START_TIMEOUT,
            )
            self._upstreams[name] = url
        return self._upstreams[name]

    # --- the database and the API keys ----------------------------------------------------

    def proxy_env(self) -> dict[str, str]:
        """The environment of manage.py and the proxy: every resource private to this run."""
        env = base_env(inherit=None)
        for name in _CLEARED:
            env.pop(name, None)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=f"sqlite:///{self.database}",
            REDIS_URL=self.redis().url,
            REDIS_KEY_PREFIX=REDIS_KEY_PREFIX,
            PROXY_UPSTREAM_BASE_URL=self.upstream_url(),
            PROXY_UPSTREAM_TIMEOUT="60",
            ANTHROPIC_API_KEY=UPSTREAM_CREDENTIAL,
            SECRET_KEY=BENCH_SECRET,
            MASKING_KEY=BENCH_MASKING_SECRET,
            LOG_LEVEL="WARNING",
            LITELLM_LOG_LEVEL="WARNING",
        )
        env.update(self.extra_env)
        return env

    @property
    def database(self) -> Path:
        """The proxy's SQLite database (audit records included)."""
        return self.tmp / "bench.sqlite3"

    def api_key(self) -> str:
        """A proxy key in namespace NAMESPACE, on a freshly migrated database."""
        if self._api_key is None:
            # The load benchmarks send far more than a key's default share.
            self._api_key = self.create_api_key("bench", NAMESPACE, unlimited=True)
        return self._api_key

    def create_api_key(self, name: str, namespace: str, *, unlimited: bool) -> str:
        """A new proxy key: with no limits at all, or with the server's default ones."""
        if not self._migrated:
            self.manage("migrate", "--noinput")
            self._migrated = True
        create = ["create_api_key", name, "--namespace", namespace]
        if unlimited:
            create += ["--rate-limit", "0", "--max-streams", "0"]
        return self.manage(*create).strip().splitlines()[-1]

    def manage(self, *args: str) -> str:
        """What `manage.py <args>` prints, run with the proxy's environment."""
        done = subprocess.run(  # noqa: S603 - our own manage.py commands
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.proxy_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    # --- the proxy -------------------------------------------------------------------------

    def proxy(self, workers: int = 1) -> Proxy:
        """The run's shared proxy with this many workers."""
        if workers not in self._proxies:
            self._proxies[workers] = self._start_proxy(workers)
        return self._proxies[workers]

    @contextlib.contextmanager
    def fresh_proxy(self, workers: int = 1) -> Iterator[Proxy]:
        """A proxy of its own, stopped on exit (for figures that a shared one would blur)."""
        proxy = self._start_proxy(workers, shared=False)
        try:
            yield proxy
        finally:
            terminate(proxy.process)

    @contextlib.contextmanager
    def served_proxy(self, workers: int) -> Iterator[Proxy]:
        """A proxy started as make serve starts it (gunicorn pre-forking uvicorn workers,
        config/serving.py), stopped on exit."""
        self.api_key()  # migrated database first
        port = free_port()
        log = self.tmp / f"served-{port}.log"
        env = {**self.proxy_env(), "HOST": HOST, "PORT": str(port), "WORKERS": str(workers)}
        args = [PYTHON, "-m", "gunicorn", "-c", "python:config.serving", "config.asgi:application"]
        process = spawn(args, log, env)
        try:

            def ready() -> bool:
                started = len(re.findall(r"Started server process", tail(log, 200)))
                return started >= workers and _answers(f"http://{HOST}:{port}/health")

            what = f"make serve's server ({workers} worker(s))"
            wait_until(ready, process, what, log, timeout=START_TIMEOUT)
            yield Proxy(process=process, url=f"http://{HOST}:{port}", workers=workers, log=log)
        finally:
            terminate(process)

    def floor(self) -> Proxy:
        """The run's floor server (bench/floor_app.py): uvicorn and LiteLLM, nothing else."""
        if self._floor is None:
            port = free_port()
            log = self.tmp / f"floor-{port}.log"
            env = {**base_env(inherit=None), "FLOOR_UPSTREAM_URL": self.upstream_url()}
            flags = _uvicorn_flags(port, lifespan="on")
            process = spawn([PYTHON, "-m", "uvicorn", "bench.floor_app:app", *flags], log, env)
            self._stack.callback(terminate, process)
            url = f"http://{HOST}:{port}"
            health = f"{url}/health"
            wait_until(
                lambda: _answers(health), process, "the floor server", log, timeout=START_TIMEOUT
            )
            self._floor = Proxy(process=process, url=url, workers=1, log=log)
        return self._floor

    def _start_proxy(self, workers: int, *, shared: bool = True) -> Proxy:
        self.api_key()  # migrated database first
        port = free_port()
        log = self.tmp / f"proxy-{port}.log"
        flags = _uvicorn_flags(port, log_level="info", lifespan="on")
        flags += ["--http", "config.http:BoundedHttpProtocol", "--ws", "none"]  # as make serve
        if workers > 1:
            flags += ["--workers", str(workers)]
        process = spawn(
            [PYTHON, "-m", "uvicorn", "config.asgi:application", *flags], log, self.proxy_env()
        )
        if shared:
            self._stack.callback(terminate, process)

        def ready() -> bool:
            # Each worker logs this once it has imported the application.
            started = len(re.findall(r"Started server process", tail(log, 200)))
            return started >= workers and _answers(f"http://{HOST}:{port}/health")

        wait_until(ready, process, f"the proxy ({workers} worker(s))", log, timeout=START_TIMEOUT)
        return Proxy(process=process, url=f"http://{HOST}:{port}", workers=workers, log=log)

    # --- LiteLLM without the proxy ---------------------------------------------------------

    def direct(self) -> DirectClient:
        if self._direct is None:
            log = self.tmp / "direct.log"
            with log.open("ab") as errors:
                process = subprocess.Popen(  # noqa: S603 - our own module
                    [PYTHON, "-m", "bench.direct_client", self.upstream_url()],
                    cwd=ROOT,
                    env=base_env(inherit=None),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    start_new_session=True,
                )
            self._stack.callback(_stop_direct, process)
            client = DirectClient(process)
            client.call(op="ping")  # answers once LiteLLM is imported
            self._direct = client
        return self._direct


def _stop_direct(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()  # end of commands: it exits by itself
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        terminate(process)
    if process.stdout is not None:
        process.stdout.close()


def _uvicorn_flags(port: int, *, log_level: str = "warning", lifespan: str = "off") -> list[str]:
    return [
        "--host",
        HOST,
        "--port",
        str(port),
        "--lifespan",
        lifespan,
        "--log-level",
        log_level,
        "--no-access-log",
    ]
