"""Logging: the spec's line format, JSON lines, request ids, one line per record."""

from __future__ import annotations

import copy
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from config.logging import request_id_var


@pytest.fixture
def configured(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    logging.config.dictConfig(settings.LOGGING)  # put the test run's configuration back


def _configure(log_format: str, times: int = 1) -> None:
    config: dict[str, Any] = copy.deepcopy(settings.LOGGING)
    config["handlers"]["console"]["formatter"] = log_format
    for _ in range(times):
        logging.config.dictConfig(config)


def test_setting_up_again_never_duplicates_a_line(
    configured: None, capfd: pytest.CaptureFixture[str]
) -> None:
    _configure("text", times=3)
    import proxy.upstream  # noqa: F401  (LiteLLM adds handlers of its own at import)

    logging.getLogger("proxy.services").warning("once %s", "only")
    logging.getLogger("LiteLLM").warning("litellm line")
    lines = capfd.readouterr().err.splitlines()
    assert [line for line in lines if "once only" in line] == [lines[0]]
    assert len([line for line in lines if "litellm line" in line]) == 1


def test_text_lines_follow_the_original_format(
    configured: None, capfd: pytest.CaptureFixture[str]
) -> None:
    _configure("text")
    logging.getLogger("proxy.services").warning("hello")
    line = capfd.readouterr().err.strip()
    date, time_, rest = line.split(" ", 2)
    assert len(date) == 10 and "," in time_
    assert rest == "- proxy.services - WARNING - hello"


def test_json_lines_carry_the_request_id(
    configured: None, capfd: pytest.CaptureFixture[str]
) -> None:
    _configure("json")
    token = request_id_var.set("req_test123")
    try:
        logging.getLogger("patterns.store").error("boom")
    finally:
        request_id_var.reset(token)
    entry = json.loads(capfd.readouterr().err.strip())
    assert entry["request_id"] == "req_test123"
    assert (entry["logger"], entry["level"], entry["message"]) == (
        "patterns.store",
        "ERROR",
        "boom",
    )
