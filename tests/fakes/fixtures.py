"""The fake upstreams as session fixtures, for conftest modules to import."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI


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
