"""The placements cache through the live proxy and a real Redis: a conversation's values are
not placed again every turn, and a mapping deleted from Redis meanwhile never gives one
placeholder to two values."""

from __future__ import annotations

import json
import re

import anthropic
import redis
from django.conf import settings

from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey

FIRST = "i-0a1b2c3d4e5f60718"
SECOND = "i-0fedcba9876543210"


def _namespace_keys(redis_client: redis.Redis, api_key: IssuedKey) -> list[bytes]:
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    namespace = api_key.record.effective_namespace
    return list(redis_client.scan_iter(match=f"{prefix}:mask:{{{namespace}}}:*", count=1000))


def _said(client: anthropic.Anthropic, text: str) -> str:
    message = client.messages.create(
        model="fake-echo", max_tokens=200, messages=[{"role": "user", "content": text}]
    )
    return "".join(block.text for block in message.content if block.type == "text")


def _placeholders_sent(upstream: FakeAnthropic) -> list[str]:
    body = upstream.requests[-1].json or {}
    return re.findall(r"AWS_EC2_[0-9]{3}", json.dumps(body["messages"]))


def test_a_value_placed_a_moment_ago_is_not_placed_again(
    client: anthropic.Anthropic,
    upstream: FakeAnthropic,
    api_key: IssuedKey,
    redis_client: redis.Redis,
) -> None:
    assert _said(client, f"restart {FIRST}") == f"You said: restart {FIRST}"
    for key in _namespace_keys(redis_client, api_key):
        redis_client.expire(key, 1000)
    assert _said(client, f"and {FIRST} again") == f"You said: and {FIRST} again"
    # Trusted from the cache: Redis was not asked, so the TTLs were not refreshed.
    assert all(0 < redis_client.ttl(key) <= 1000 for key in _namespace_keys(redis_client, api_key))
    assert _placeholders_sent(upstream) == ["AWS_EC2_001"]


def test_a_mapping_deleted_meanwhile_never_gives_one_placeholder_to_two_values(
    client: anthropic.Anthropic,
    upstream: FakeAnthropic,
    api_key: IssuedKey,
    redis_client: redis.Redis,
) -> None:
    assert _said(client, f"restart {FIRST}") == f"You said: restart {FIRST}"
    for key in _namespace_keys(redis_client, api_key):
        redis_client.delete(key)  # an operator cleared the namespace: its numbering restarts
    text = f"{FIRST} and {SECOND} both"
    assert _said(client, text) == f"You said: {text}"
    sent = _placeholders_sent(upstream)
    assert len(sent) == 2 and len(set(sent)) == 2  # two values, two placeholders
    # Placed again in Redis: both values have their mappings there now.
    assert len([k for k in _namespace_keys(redis_client, api_key) if b":v:" in k]) == 2
