"""Evasion through the running proxy: what the engine finds is what the provider never sees.

A value split across two text blocks, or across two consecutive messages of one role (the API
merges those into one turn), is found by scanning them as one; an invisible character inside
an ID does not hide it; and the client's exact text comes back in the reply.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey

# Neither half of it is a value on its own: ten hex digits are no instance ID.
HEAD, TAIL = "instance i-0123456789", "abcdef0 keeps restarting"
HALVES = (b"0123456789", b"abcdef0")


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": [_text(HEAD), _text(TAIL)]}],
        [{"role": "user", "content": HEAD}, {"role": "user", "content": [_text(TAIL)]}],
    ],
    ids=["two-blocks", "two-messages"],
)
def test_a_value_split_between_pieces_read_together_never_reaches_the_provider(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, messages: list[dict[str, Any]]
) -> None:
    body = {"model": "fake-echo", "max_tokens": 50, "messages": messages}
    response = httpx.post(
        f"{proxy_url}/v1/messages", json=body, headers={"x-api-key": api_key.key}, timeout=30
    )
    assert response.status_code == 200, response.text
    [request] = upstream.requests
    for half in HALVES:
        assert half not in request.body
    assert b"AWS_EC2_" in request.body


def test_an_invisible_character_inside_an_id_does_not_hide_it_and_comes_back(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    written = "i-0a1b\u200b2c3d4e5f6a7b8"
    body = {
        "model": "fake-echo",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": f"restart {written}"}],
    }
    response = httpx.post(
        f"{proxy_url}/v1/messages", json=body, headers={"x-api-key": api_key.key}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert b"2c3d4e5f6a7b8" not in upstream.raw_bodies()
    assert written in response.json()["content"][0]["text"]
