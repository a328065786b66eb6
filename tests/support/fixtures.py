"""Session and module fixtures the suites share: the fake upstreams, a private redis-server and
a directory for proxy processes. Registered once, by `pytest_plugins` in tests/conftest.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.fakes.openai_upstream import FakeOpenAI
from tests.support.processes import REDIS_NEEDED, PrivateRedis


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A started fake shared by the session; each test calls ``clear()`` before it counts."""
    fake = FakeAnthropic()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started fake shared by the session; each test calls ``clear()`` before it counts."""
    fake = FakeOpenAI()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


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


@pytest.fixture(scope="module")
def site_directory() -> Iterator[Path]:
    """A temporary directory for one module's database and process logs, removed after."""
    with tempfile.TemporaryDirectory(prefix="maskproxy-site-") as directory:
        yield Path(directory)
