"""Logging: the classic line format (2025-08-22 12:44:30,695 - module - INFO - message), JSON
lines, request ids, one line per record."""

from __future__ import annotations

import copy
import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from config.logging import DISALLOWED_HOST_LINE, UNROUTED, request_id_var


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


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/models/AKIA1234567890ABCDEF", "/v1/models/<path:model_id>"),
        ("/v1/i-0123456789abcdef0/x", UNROUTED),
    ],
)
def test_request_lines_show_the_route_never_the_clients_path(
    configured: None, capfd: pytest.CaptureFixture[str], path: str, route: str
) -> None:
    _configure("text")
    response = Client().get(path)
    assert response.status_code in (401, 404)
    err = capfd.readouterr().err
    assert route in err
    assert "AKIA1234567890ABCDEF" not in err and "i-0123456789abcdef0" not in err


def test_a_refused_host_header_is_not_logged(
    configured: None, capfd: pytest.CaptureFixture[str]
) -> None:
    _configure("text")
    response = Client().get("/health", headers={"host": "AKIA1234567890ABCDEF.example"})
    assert response.status_code == 400
    err = capfd.readouterr().err
    assert DISALLOWED_HOST_LINE in err
    assert "AKIA1234567890ABCDEF" not in err
