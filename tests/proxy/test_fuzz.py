"""Fuzzing /v1/messages and count_tokens with generated bodies and headers (hypothesis).

Every answer must be a 2xx or a 4xx in Anthropic's shape — never a 5xx — and whatever is
forwarded must hold no sensitive value the body carried. FUZZ_EXAMPLES sets the number of
generated requests (10,000 by default).
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey

# An empty FUZZ_EXAMPLES counts as unset, as every setting does (.env.example lists it empty).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or "10000")
SENSITIVE = ("i-0123456789abcdef0", "vpc-0a1b2c3d", "AKIA1234567890ABCDEF", "52.95.110.1")
ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
TEXT = st.one_of(
    ODD_TEXT,
    st.lists(st.one_of(st.sampled_from(SENSITIVE), ODD_TEXT), max_size=6).map(" ".join),
    st.sampled_from(["", "x" * 5000, "\u0000", "é" * 100, "AWS_EC2_001"]),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT)
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_use"),
            "id": st.just("toolu_1"),
            "name": st.just("bash"),
            "input": ANY_JSON,
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_result"),
            "tool_use_id": st.just("toolu_1"),
            "content": st.one_of(
                TEXT,
                st.lists(
                    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), max_size=2
                ),
            ),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["mystery_block", "document", "image"]), "data": ANY_JSON}
    ),
    st.dictionaries(st.sampled_from(["type", "text", "input"]), ANY_JSON, max_size=3),
)
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system"]),
            "content": st.one_of(TEXT, st.lists(BLOCK, max_size=3)),
        }
    ),
    st.dictionaries(st.sampled_from(["role", "content", "extra"]), ANY_JSON, max_size=3),
)
BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": st.one_of(st.just("fake-echo"), TEXT, ANY_JSON),
        "max_tokens": st.one_of(st.integers(min_value=-5, max_value=100_000), ANY_JSON),
        "messages": st.one_of(st.lists(MESSAGE, max_size=4), ANY_JSON),
        "system": st.one_of(TEXT, st.lists(BLOCK, max_size=2), ANY_JSON),
        "stream": st.one_of(st.booleans(), ANY_JSON),
        "stop_sequences": st.one_of(st.lists(TEXT, max_size=2), ANY_JSON),
        "metadata": st.one_of(st.fixed_dictionaries({"user_id": TEXT}), ANY_JSON),
        "unknown_field": ANY_JSON,
    },
)
VALID_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system"]),
        "content": st.one_of(TEXT, st.lists(BLOCK, min_size=1, max_size=3)),
    }
)
# Well-formed enough to be forwarded: these check that what goes upstream is masked.
VALID_BODY = st.fixed_dictionaries(
    {
        "model": st.just("fake-echo"),
        "max_tokens": st.integers(min_value=1, max_value=100),
        "messages": st.lists(VALID_MESSAGE, min_size=1, max_size=4),
    },
    optional={
        "system": TEXT,
        "stream": st.booleans(),
        "stop_sequences": st.lists(TEXT, max_size=2),
        "metadata": st.fixed_dictionaries({"user_id": TEXT}),
        "future_field": ANY_JSON,
    },
)
RAW = st.one_of(
    st.builds(lambda body: json.dumps(body).encode(), VALID_BODY),
    st.builds(lambda body: json.dumps(body).encode(), VALID_BODY),
    st.binary(max_size=200),
    st.builds(lambda body: json.dumps(body).encode(), BODY),
    st.builds(lambda body: json.dumps(body)[:-1].encode(), BODY),  # cut short
    st.builds(lambda body: ("[" * 300 + json.dumps(body) + "]" * 300).encode(), BODY),
    st.just(b'{"model": "fake-echo", "model": 5, "max_tokens": 1, "messages": []}'),
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(
            ["application/json", "text/plain", "", "application/json; charset=latin-1"]
        ),
        "anthropic-version": st.sampled_from(["2023-06-01", "", "garbage"]),
        "anthropic-beta": st.sampled_from(["", "tools-2024-04-04", "a,b,c"]),
    },
)


@pytest.fixture
def http(proxy_url: str) -> Any:
    with httpx.Client(base_url=proxy_url, timeout=30) as client:
        yield client


def test_generated_requests_get_2xx_or_4xx_and_forward_no_value(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    seen = {"requests": 0, "forwarded": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        raw=RAW,
        headers=HEADERS,
        endpoint=st.sampled_from(["/v1/messages", "/v1/messages/count_tokens"]),
    )
    def check(raw: bytes, headers: dict[str, str], endpoint: str) -> None:
        before = len(upstream.requests)
        response = http.post(endpoint, content=raw, headers={**headers, "x-api-key": api_key.key})
        seen["requests"] += 1
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            body = response.json()
            assert body["type"] == "error" and body["error"]["type"], body
        forwarded = upstream.requests[before:]
        seen["forwarded"] += len(forwarded)
        for request in forwarded:
            for value in SENSITIVE:
                assert value.encode() not in request.body, (value, raw[:200])

    check()
    print(f"fuzz: {seen['requests']} requests, {seen['forwarded']} forwarded upstream")
    assert seen["requests"] >= EXAMPLES * 0.9
