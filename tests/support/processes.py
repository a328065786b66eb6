"""Processes of our own for tests and benchmarks: free ports, spawning and stopping, a private
redis-server and Redis sentinels.

Each process runs in a session of its own (stopping its group never signals the caller), with
its stdout and stderr in a log file a failure message can quote. The private redis-server can
keep an append-only file fsynced on every write, so it can be stopped (SIGTERM) and started
again on the same port with its data, or paused (SIGSTOP). Everything listens on 127.0.0.1.
`bench/harness.py` uses the same helpers; nothing here imports pytest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from tests.support.constants import HOST
from tests.support.redis_dump import dump_keys

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# The only variables a child inherits by default; every setting is set explicitly.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
REDIS_NEEDED = (
    "redis-server is needed: these tests stop, restart and pause a private Redis "
    "(install Debian's redis-server package)"
)


def free_port() -> int:
    """A port the kernel had free a moment ago (uvicorn and redis-server need a number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def spawn(args: Sequence[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start our own command from the repository's root, its output appended to `log`."""
    # A session of its own: stopping its group can never signal the caller.
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


def terminate(process: subprocess.Popen[Any], grace: float = STOP_TIMEOUT) -> None:
    """SIGTERM (uvicorn's master stops its own workers), then SIGKILL to the process group we
    created if it outstays `grace`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen[Any],
    what: str,
    log: Path,
    *,
    timeout: float = START_TIMEOUT,
) -> None:
    """Return once `ready()`; if the process exits or `timeout` passes first, stop it and
    raise, quoting the end of its log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            terminate(process)
            raise RuntimeError(f"{what} did not start; the end of its output:\n{tail(log)}")
        time.sleep(0.05)


def base_env(inherit: Iterable[str] | None = INHERITED) -> dict[str, str]:
    """A child's environment: the variables named in `inherit` (all of ours with None), and
    LiteLLM told not to download its price map, not to load a .env and to log line by line."""
    if inherit is None:
        env = dict(os.environ)
    else:
        env = {name: os.environ[name] for name in inherit if name in os.environ}
    env.update(LITELLM_OFFLINE_MODE="true", LITELLM_MODE="PRODUCTION", PYTHONUNBUFFERED="1")
    return env


def running_in_group(pgid: int) -> list[int]:
    """Processes of the group (a session `spawn` started) that have not exited.

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


class PrivateRedis:
    """A redis-server of our own on a free port, with its files in `directory`.

    Persistent (the default): an append-only file fsynced on every write, so what a client saw
    written survives a stop. Otherwise: no persistence at all (the benchmarks).
    """

    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        extra_args: Sequence[str] = (),
        persistent: bool = True,
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.extra_args = tuple(extra_args)  # e.g. ("--replicaof", HOST, "<port>")
        self.persistent = persistent
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
        # No RDB snapshots; loopback only.
        args = [self.binary, "--bind", HOST, "--port", str(self.port), "--dir", str(self.directory)]
        args += ["--save", ""]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        process = spawn([*args, *self.extra_args], self.log, base_env())
        wait_until(self._answers, process, "the private redis-server", self.log)
        self._process = process

    def stop(self) -> None:
        """SIGTERM and wait for the exit: Redis closes its clients and flushes its AOF."""
        if self._process is None:
            return
        self.resume()  # a stopped process would not act on SIGTERM
        terminate(self._process)
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

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A client of this server (also a context manager that closes it)."""
        return redis.Redis(
            host=HOST, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def dump(self) -> bytes:
        """Every key and every value this server holds, of any type, for leak searches."""
        with self.client() as client:
            return dump_keys(client, client.scan_iter(match="*", count=1000))

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
        self._process: subprocess.Popen[bytes] | None = spawn(
            [binary, str(self.config), "--sentinel"], self.log, base_env()
        )
        wait_until(self._answers, self._process, "a private redis sentinel", self.log)

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
            terminate(self._process)
            self._process = None

    def _answers(self) -> bool:
        try:
            with redis.Redis(host=HOST, port=self.port, socket_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


def in_fresh_interpreter(
    code: str, dropped: Callable[[str], bool], **overrides: str
) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter from the repository, with the environment less the
    variables `dropped` names, plus overrides."""
    env = {name: value for name, value in os.environ.items() if not dropped(name)}
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
