"""The proof: with every logger at DEBUG, a full request suite leaks no original value.

Searched: every log record, everything the process wrote to stdout and stderr, the audit
rows, every table of the database, every Redis key and value of this run, and what the
provider received.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
import redis

from tests.support.constants import KOREAN_REPORT, KOREAN_REPORT_VALUES
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.leaks import database_dump, every_logger_at_debug, redis_down_request, redis_dump
from tests.support.live import IssuedKey, wait_for_audit

EXTRA = "Also 52.95.110.1 and account 123456789012."
VALUES = (*KOREAN_REPORT_VALUES, "52.95.110.1", "123456789012")
TOOLS: list[Any] = [
    {
        "name": "bash",
        "description": "Run a command on i-1234567890abcdef0",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    }
]


@pytest.fixture
def everything_at_debug() -> Iterator[None]:
    with every_logger_at_debug():
        yield


def _ask(client: anthropic.Anthropic, model: str, **fields: Any) -> None:
    messages = fields.pop("messages", [{"role": "user", "content": KOREAN_REPORT + EXTRA}])
    with contextlib.suppress(anthropic.APIStatusError):
        client.messages.create(model=model, max_tokens=50, messages=messages, **fields)


def _stream(client: anthropic.Anthropic, model: str, **fields: Any) -> None:
    with (
        contextlib.suppress(anthropic.APIStatusError),
        client.messages.stream(
            model=model,
            max_tokens=50,
            messages=[{"role": "user", "content": KOREAN_REPORT}],
            **fields,
        ) as stream,
    ):
        stream.get_final_message()


def _request_suite(client: anthropic.Anthropic, proxy_url: str, key: str) -> int:
    """Runs the requests; returns how many of them leave an audit record."""
    _ask(client, "fake-echo", system=KOREAN_REPORT)
    _stream(client, "fake-echo")
    _stream(client, "fake-tool", tools=TOOLS)
    _ask(client, "fake-tool", tools=TOOLS)
    _ask(client, "fake-thinking", thinking={"type": "enabled", "budget_tokens": 1024})
    history: list[Any] = [{"role": "user", "content": "i-1234567890abcdef0?"}]
    for _ in range(3):
        history += [
            {"role": "assistant", "content": "Yes, vpc-12345678."},
            {"role": "user", "content": KOREAN_REPORT},
        ]
        _ask(client, "fake-echo", messages=history)
    for model in ("fake-error-400", "fake-error-429", "fake-error-529", "fake-error-500"):
        _ask(client, model)
    _stream(client, "fake-error-midstream")
    _stream(client, "fake-truncated")
    client.messages.count_tokens(
        model="fake-echo", messages=[{"role": "user", "content": KOREAN_REPORT}]
    )
    headers = {"x-api-key": key}
    bad_json = b'{"model": "m", "messages": [{"content": "' + KOREAN_REPORT.encode() + b'"'
    httpx.post(f"{proxy_url}/v1/messages", content=bad_json, headers=headers, timeout=30)
    wrong_type = {"model": KOREAN_REPORT, "max_tokens": "i-1234567890abcdef0", "messages": []}
    httpx.post(f"{proxy_url}/v1/messages", json=wrong_type, headers=headers, timeout=30)
    httpx.post(f"{proxy_url}/v1/messages", json={"x": KOREAN_REPORT}, timeout=30)  # no key
    return 17  # all but the one without a key


def test_no_original_value_is_logged_stored_or_forwarded(
    everything_at_debug: None,
    proxy_url: str,
    client: anthropic.Anthropic,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    redis_client: redis.Redis,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    audited = _request_suite(client, proxy_url, api_key.key)
    redis_down_request(closed_port, KOREAN_REPORT)
    wait_for_audit(audited + 1)
    output = capfd.readouterr()
    places = {
        "log records": caplog.text,
        "stdout": output.out,
        "stderr": output.err,
        "database": database_dump(),
        "redis": redis_dump(redis_client).decode("latin-1"),
        "upstream": upstream.raw_bodies().decode("utf-8", "replace"),
    }
    assert len(caplog.records) > 50  # the suite really logged at DEBUG
    for place, text in places.items():
        for value in (*VALUES, api_key.key):
            assert value not in text, f"{value!r} found in {place}"
