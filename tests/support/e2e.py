"""Claude Code, the real CLI, run headless against the live proxy in front of the fake upstream.

The pinned Claude Code lives in e2e/node_modules (`scripts/ensure-claude-code` runs `npm ci`
there; the session fixture runs it too when the binary is missing). Each run gets its own HOME
and working directory, every setting that turns off Claude Code's own traffic (telemetry,
error reports, auto-update, non-essential calls), and HTTP(S)_PROXY pointed at a local recorder
that answers nothing: any connection Claude Code tried to open beyond 127.0.0.1 would be
recorded there, and the tests assert that none was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey

ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = ROOT / "e2e"
CLAUDE = E2E_DIR / "node_modules" / ".bin" / "claude"
ENSURE_SCRIPT = ROOT / "scripts" / "ensure-claude-code"
PACKAGE = "@anthropic-ai/claude-code"
# A first run sets up its HOME; with the fake upstream, a turn takes well under a second.
RUN_TIMEOUT = 120
# Claude Code's smaller model (ANTHROPIC_DEFAULT_HAIKU_MODEL, formerly
# ANTHROPIC_SMALL_FAST_MODEL) gets a name of its own, so a call to it shows in the requests.
SMALL_MODEL = "fake-echo-small"
# Environment variables of Claude Code 2.1.332 (their names checked in its binary) that stop
# the calls it makes besides the Messages API: telemetry, error reports, auto-update, surveys
# and the umbrella switch for the rest of its "non-essential" traffic. Without them, one
# `claude -p` run opened three connections to api.anthropic.com:443 on its own.
QUIET = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
}


def pinned_version() -> str:
    package = json.loads((E2E_DIR / "package.json").read_text())
    return str(package["dependencies"][PACKAGE])


def installed_version() -> str | None:
    """What `claude --version` says its version is; None when it does not run."""
    if not os.access(CLAUDE, os.X_OK):
        return None
    try:
        done = subprocess.run(
            [CLAUDE, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.split()
    return words[0] if done.returncode == 0 and words else None


@pytest.fixture(scope="session")
def claude_binary() -> Path:
    """The pinned Claude Code, installed by scripts/ensure-claude-code when missing."""
    return ensure_claude_code()


def ensure_claude_code() -> Path:
    """The pinned Claude Code's path; the test is skipped, saying why, when it cannot run."""
    pinned = pinned_version()
    if installed_version() != pinned:
        done = subprocess.run(
            [ENSURE_SCRIPT], capture_output=True, text=True, timeout=600, check=False
        )
        if installed_version() != pinned:
            # The script's own lines say what went wrong; npm's details are in its log.
            lines = done.stderr.splitlines()
            said = " ".join(line for line in lines if line.startswith("ensure-claude-code:"))
            pytest.skip(
                f"Claude Code {pinned} is not installed in e2e/node_modules and "
                f"scripts/ensure-claude-code could not install it (it needs npm and the npm "
                f"registry): {said}"
            )
    return CLAUDE


class OutboundRecorder:
    """A local port for HTTP(S)_PROXY that records each connection's first line and hangs up.

    Claude Code sends its requests for other hosts through the proxy it is given (without the
    QUIET settings, this recorder sees `CONNECT api.anthropic.com:443`), so an attempt to
    reach anything but 127.0.0.1 shows up here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: list[str] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(32)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="outbound", daemon=True)
        self._thread.start()

    @property
    def attempts(self) -> list[str]:
        with self._lock:
            return list(self._attempts)

    def clear(self) -> None:
        with self._lock:
            self._attempts.clear()

    def close(self) -> None:
        # shutdown() wakes the accept() in _serve; close() alone does not on Linux.
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed
            with connection:
                connection.settimeout(2)
                try:
                    first = connection.recv(4096).split(b"\r\n", 1)[0]
                except OSError:
                    first = b"<nothing read>"
                with self._lock:
                    self._attempts.append(first.decode("latin-1"))


@pytest.fixture(scope="session")
def outbound() -> Iterator[OutboundRecorder]:
    recorder = OutboundRecorder()
    try:
        yield recorder
    finally:
        recorder.close()


@dataclass(frozen=True)
class ClaudeRun:
    """One `claude -p ... --output-format json` run: its exit, its output, its duration."""

    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    output: Mapping[str, Any] = field(default_factory=dict)

    @property
    def result(self) -> str:
        return str(self.output.get("result", ""))

    @property
    def session_id(self) -> str:
        return str(self.output["session_id"])

    def check(self) -> ClaudeRun:
        """This run, once it is known to have succeeded (else a failure that shows why)."""
        ok = self.returncode == 0 and self.output.get("is_error") is False
        assert ok, (
            f"claude {' '.join(self.args)} exited {self.returncode}\n"
            f"stdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}"
        )
        return self


@dataclass
class ClaudeCode:
    """Runs the installed Claude Code headless with a private HOME and working directory."""

    binary: Path
    base_url: str
    api_key: str
    home: Path
    cwd: Path
    outbound_proxy: str
    # "api_key" sends it as x-api-key (ANTHROPIC_API_KEY), "auth_token" as a Bearer token.
    credential: str = "api_key"

    def env(self) -> dict[str, str]:
        # Built from nothing, so no ANTHROPIC_* or proxy setting of the test machine leaks in.
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "SHELL": shutil.which("bash") or "/bin/bash",
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.home / "tmp"),
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": SMALL_MODEL,
            "ANTHROPIC_SMALL_FAST_MODEL": SMALL_MODEL,
            "HTTPS_PROXY": self.outbound_proxy,
            "HTTP_PROXY": self.outbound_proxy,
            "NO_PROXY": "127.0.0.1,localhost",
            **QUIET,
        }
        name = "ANTHROPIC_API_KEY" if self.credential == "api_key" else "ANTHROPIC_AUTH_TOKEN"
        env[name] = self.api_key
        return env

    def run(self, prompt: str, *args: str, model: str | None = "fake-echo") -> ClaudeRun:
        """`claude -p <prompt> --output-format json --model <model> <args>`, read to the end.

        model=None leaves the choice to Claude Code (its default model).
        """
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        chosen = [] if model is None else ["--model", model]
        argv = ["-p", prompt, "--output-format", "json", *chosen, *args]
        started = time.monotonic()
        done = subprocess.run(
            [self.binary, *argv],
            cwd=self.cwd,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        seconds = time.monotonic() - started
        try:
            output = json.loads(done.stdout)
        except ValueError:
            output = {}
        return ClaudeRun(argv, done.returncode, done.stdout, done.stderr, seconds, output)

    def transcripts(self) -> str:
        """Every session transcript Claude Code saved under its HOME, joined."""
        files = sorted((self.home / ".claude" / "projects").rglob("*.jsonl"))
        return "\n".join(path.read_text() for path in files)


@pytest.fixture
def claude_code(
    claude_binary: Path,
    proxy_url: str,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    outbound: OutboundRecorder,
    tmp_path: Path,
) -> Iterator[ClaudeCode]:
    """Claude Code pointed at the live proxy with a fresh proxy key; no traffic elsewhere."""
    outbound.clear()
    claude = ClaudeCode(
        claude_binary, proxy_url, api_key.key, tmp_path / "home", tmp_path / "work", outbound.url
    )
    yield claude
    assert outbound.attempts == [], "Claude Code tried to reach beyond 127.0.0.1"


# The official Anthropic TypeScript SDK, run by e2e/sdk_client.mjs in node.
SDK_PACKAGE = "@anthropic-ai/sdk"
SDK_DIR = E2E_DIR / "node_modules" / SDK_PACKAGE
SDK_CLIENT = E2E_DIR / "sdk_client.mjs"
# One node process runs a handful of scenarios, each well under a second with the fake.
SDK_RUN_TIMEOUT = 60


def pinned_sdk_version() -> str:
    package = json.loads((E2E_DIR / "package.json").read_text())
    return str(package["dependencies"][SDK_PACKAGE])


def installed_sdk_version() -> str | None:
    """The version in the installed SDK's package.json; None when it is not there."""
    try:
        return str(json.loads((SDK_DIR / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def node_with_sdk() -> Path:
    """node, once the pinned SDK is installed (by scripts/ensure-claude-code when missing)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the TypeScript SDK tests need Node.js 20 or later")
    pinned = pinned_sdk_version()
    if installed_sdk_version() != pinned:
        done = subprocess.run(
            [ENSURE_SCRIPT], capture_output=True, text=True, timeout=600, check=False
        )
        if installed_sdk_version() != pinned:
            lines = done.stderr.splitlines()
            said = " ".join(line for line in lines if line.startswith("ensure-claude-code:"))
            pytest.skip(
                f"{SDK_PACKAGE} {pinned} is not installed in e2e/node_modules and "
                f"scripts/ensure-claude-code could not install it (it needs npm and the npm "
                f"registry): {said}"
            )
    return Path(node)


@dataclass(frozen=True)
class SdkRun:
    """One run of e2e/sdk_client.mjs: a result per scenario, by name, and its duration."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    sdk_version: str
    results: Mapping[str, Mapping[str, Any]]

    def ok(self, name: str) -> Mapping[str, Any]:
        """What scenario `name` received, once it is known to have raised nothing."""
        result = self.results[name]
        assert result["error"] is None, f"{name}: {result['error']}\nstderr: {self.stderr[-3000:]}"
        return dict(result["out"])

    def error(self, name: str) -> Mapping[str, Any]:
        """The error scenario `name` raised (a failure when it raised none)."""
        result = self.results[name]
        assert result["error"] is not None, f"{name} raised nothing: {result['out']}"
        return dict(result["error"])


@dataclass
class TypeScriptSdk:
    """Runs scenarios (see e2e/sdk_client.mjs) with the SDK pointed at the live proxy."""

    node: Path
    base_url: str
    api_key: str
    home: Path

    def run(self, scenarios: Sequence[Mapping[str, Any]]) -> SdkRun:
        self.home.mkdir(parents=True, exist_ok=True)
        # Built from nothing, so no ANTHROPIC_* setting (nor a proxy) of the test machine
        # leaks in; the scenarios pass the base URL and the credential explicitly.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)}
        env["LANG"] = "C.UTF-8"
        request = {"baseURL": self.base_url, "key": self.api_key, "scenarios": list(scenarios)}
        started = time.monotonic()
        done = subprocess.run(
            [self.node, SDK_CLIENT],
            cwd=E2E_DIR,
            env=env,
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=SDK_RUN_TIMEOUT,
            check=False,
        )
        seconds = time.monotonic() - started
        assert done.returncode == 0, f"node exited {done.returncode}: {done.stderr[-3000:]}"
        output = json.loads(done.stdout)
        results = {result["name"]: result for result in output["results"]}
        assert len(results) == len(scenarios), "scenario names must be unique"
        return SdkRun(
            done.returncode, done.stdout, done.stderr, seconds, output["sdkVersion"], results
        )


@pytest.fixture
def typescript_sdk(
    node_with_sdk: Path,
    proxy_url: str,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    tmp_path: Path,
) -> TypeScriptSdk:
    """The installed SDK, in node, pointed at the live proxy with a fresh proxy key."""
    return TypeScriptSdk(node_with_sdk, proxy_url, api_key.key, tmp_path / "home")
