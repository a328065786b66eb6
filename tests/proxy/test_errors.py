"""Errors in Anthropic's shape: bad input, bad keys, provider failures, masking failures."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import anthropic
import httpx
import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from proxy.models import ApiKey
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.leaks import redis_down_request
from tests.support.live import IssuedKey, assert_error, wait_for_audit

VALID = {"model": "fake-echo", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def post(proxy_url: str, key: str | None, body: Any = None, **kwargs: Any) -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    if body is not None and "content" not in kwargs:
        kwargs["json"] = body
    return httpx.post(f"{proxy_url}/v1/messages", headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "wrong"},
        {"Authorization": "Bearer mpk-aaaaaaaa-" + "x" * 43},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_requests_without_a_valid_key_get_401_and_forward_nothing(
    proxy_url: str, upstream: FakeAnthropic, transactional_db: None, headers: dict[str, str]
) -> None:
    response = httpx.post(f"{proxy_url}/v1/messages", json=VALID, headers=headers, timeout=30)
    body = assert_error(response, 401, "authentication_error")
    assert body["request_id"] == response.headers["request-id"]
    assert upstream.requests == []


def test_bearer_and_x_api_key_both_authenticate(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    assert post(proxy_url, api_key.key, VALID).status_code == 200
    bearer = httpx.post(
        f"{proxy_url}/v1/messages",
        json=VALID,
        headers={"Authorization": f"Bearer {api_key.key}"},
        timeout=30,
    )
    assert bearer.status_code == 200


# Revoking is the admin's action (update(), no save()): the next test.
@pytest.mark.parametrize("change", ["disable", "expire"])
def test_disabled_or_expired_keys_stop_on_the_next_request(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, change: str
) -> None:
    assert post(proxy_url, api_key.key, VALID).status_code == 200
    record = ApiKey.objects.get(pk=api_key.record.pk)
    # As the admin's change form does it: through save(), which tells every process's key
    # cache.
    if change == "disable":
        record.enabled = False
    else:
        record.expires_at = timezone.now() - timedelta(seconds=1)
    record.save()
    upstream.clear()
    assert_error(post(proxy_url, api_key.key, VALID), 401, "authentication_error")
    assert upstream.requests == []


def test_the_admin_revoke_action_stops_a_cached_key_on_the_next_request(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, admin_client: Client
) -> None:
    assert post(proxy_url, api_key.key, VALID).status_code == 200  # now cached
    admin_client.post(
        reverse("admin:proxy_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [api_key.record.pk]},
    )
    upstream.clear()
    assert_error(post(proxy_url, api_key.key, VALID), 401, "authentication_error")
    assert upstream.requests == []


def test_a_key_that_expires_while_cached_stops_at_its_expiry(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    expires_at = timezone.now() + timedelta(seconds=1)
    ApiKey.objects.filter(pk=api_key.record.pk).update(expires_at=expires_at)
    with override_settings(API_KEY_CACHE_SECONDS=0):  # load the row with its expiry
        assert post(proxy_url, api_key.key, VALID).status_code == 200
    assert post(proxy_url, api_key.key, VALID).status_code == 200  # cached
    while timezone.now() <= expires_at:
        time.sleep(0.05)
    assert_error(post(proxy_url, api_key.key, VALID), 401, "authentication_error")


def test_a_change_made_outside_django_applies_once_the_cache_ages_out(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    assert post(proxy_url, api_key.key, VALID).status_code == 200  # now cached
    # update() sends no signal, like a change made in the database directly.
    ApiKey.objects.filter(pk=api_key.record.pk).update(enabled=False)
    with override_settings(API_KEY_CACHE_SECONDS=0):
        assert_error(post(proxy_url, api_key.key, VALID), 401, "authentication_error")


def test_last_used_is_recorded_without_a_write_per_request(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    post(proxy_url, api_key.key, VALID)
    first = ApiKey.objects.get(pk=api_key.record.pk).last_used_at
    assert first is not None
    post(proxy_url, api_key.key, VALID)
    assert ApiKey.objects.get(pk=api_key.record.pk).last_used_at == first


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VALID, "model": 3}, "model"),
        ({k: v for k, v in VALID.items() if k != "max_tokens"}, "max_tokens"),
        ({**VALID, "max_tokens": 0}, "max_tokens"),
        ({**VALID, "max_tokens": True}, "max_tokens"),
        ({**VALID, "messages": []}, "messages"),
        ({**VALID, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({**VALID, "messages": [{"role": "user"}]}, "messages.0.content"),
        ({**VALID, "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        (
            {**VALID, "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages.0.content.0",
        ),
        ({**VALID, "system": {"x": 1}}, "system"),
        ({**VALID, "stream": "yes"}, "stream"),
        ([1, 2], "JSON object"),
    ],
)
def test_invalid_requests_get_400_naming_the_field(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, body: Any, field: str
) -> None:
    error = assert_error(post(proxy_url, api_key.key, body), 400, "invalid_request_error")
    assert field in error["error"]["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\xff\xfe", b"[" * 200 + b"]" * 200, b'{"a":' * 200 + b"1" + b"}" * 200],
)
def test_malformed_bodies_get_400(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, content: bytes
) -> None:
    response = post(proxy_url, api_key.key, content=content, body=None)
    assert_error(response, 400, "invalid_request_error")
    assert upstream.requests == []


def test_oversized_body_gets_413(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    # Refused by the HTTP protocol once the head is read: httpx, still sending the body, reads
    # the answer anyway.
    huge = "x" * (settings.PROXY_MAX_BODY_BYTES + 10)
    body = {**VALID, "messages": [{"role": "user", "content": huge}]}
    assert_error(post(proxy_url, api_key.key, body), 413, "request_too_large")
    assert upstream.requests == []


def test_a_body_over_django_s_limit_gets_413_from_the_view_as_well(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    # The view's own check stays behind the protocol's, for a server started without it.
    body = {**VALID, "messages": [{"role": "user", "content": "x" * 2048}]}
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        response = post(proxy_url, api_key.key, body)

    assert_error(response, 413, "request_too_large")
    assert upstream.requests == []
    record = wait_for_audit()[0]
    assert (record.status, record.error_type) == (413, "request_too_large")


@pytest.mark.parametrize(
    ("model", "status", "error_type", "exception"),
    [
        ("fake-error-400", 400, "invalid_request_error", anthropic.BadRequestError),
        ("fake-error-401", 401, "authentication_error", anthropic.AuthenticationError),
        ("fake-error-403", 403, "permission_error", anthropic.PermissionDeniedError),
        ("fake-error-404", 404, "not_found_error", anthropic.NotFoundError),
        ("fake-error-429", 429, "rate_limit_error", anthropic.RateLimitError),
        ("fake-error-500", 500, "api_error", anthropic.InternalServerError),
        ("fake-error-529", 529, "overloaded_error", anthropic.APIStatusError),
    ],
)
def test_upstream_errors_keep_their_status_and_type(
    client: anthropic.Anthropic,
    upstream: FakeAnthropic,
    model: str,
    status: int,
    error_type: str,
    exception: type[anthropic.APIStatusError],
) -> None:
    with pytest.raises(exception) as raised:
        client.messages.create(
            model=model,
            max_tokens=10,
            messages=[{"role": "user", "content": "i-1234567890abcdef0"}],
        )
    assert raised.value.status_code == status
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["error"]["type"] == error_type
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "7"
    record = wait_for_audit()[0]
    assert (record.status, record.error_type) == (status, error_type)


def test_a_529_is_logged_as_overloaded_not_unknown(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    response = post(proxy_url, api_key.key, {**VALID, "model": "fake-error-529"})
    assert response.status_code == 529
    # (ASGI carries no reason phrase: what the client reads is uvicorn's, empty for 529.)
    assert "Overloaded: /v1/messages" in caplog.text
    assert "Unknown Status Code" not in caplog.text


def test_error_after_the_stream_started_arrives_as_an_sse_error_event(
    client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        client.messages.stream(
            model="fake-error-midstream",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
        ) as stream,
    ):
        for _ in stream.text_stream:
            pass
    assert "overloaded" in str(raised.value).lower()


def test_unreachable_upstream_is_a_502(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, closed_port: int
) -> None:
    with override_settings(PROXY_UPSTREAM_BASE_URL=f"http://127.0.0.1:{closed_port}"):
        assert_error(post(proxy_url, api_key.key, VALID), 502, "api_error")


def test_upstream_timeout_is_a_504(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    with override_settings(PROXY_UPSTREAM_TIMEOUT=1.0):
        assert_error(
            post(proxy_url, api_key.key, {**VALID, "model": "fake-slow"}), 504, "api_error"
        )


def test_unreachable_redis_refuses_and_sends_nothing_upstream(
    upstream: FakeAnthropic, closed_port: int, seeded_rules: None
) -> None:
    redis_down_request(closed_port, "i-1234567890abcdef0")
    assert upstream.requests == []
    assert wait_for_audit()[0].status == 503


def test_truncated_stream_ends_with_an_sse_error_event(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    body = {**VALID, "model": "fake-truncated", "stream": True}
    with httpx.stream(
        "POST",
        f"{proxy_url}/v1/messages",
        json=body,
        headers={"x-api-key": api_key.key},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        text = response.read().decode()
    assert text.rstrip().splitlines()[-2] == "event: error"
    assert '"type":"api_error"' in text.replace(" ", "")
    record = wait_for_audit()[0]
    assert (record.status, record.stream) == (502, True)
