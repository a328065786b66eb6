"""The fake Anthropic upstream as a session fixture, for conftest modules to import."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A started fake shared by the session; each test calls ``clear()`` before it counts."""
    fake = FakeAnthropic()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
