"""GET /health: component states, overall status, no secrets.

Who may ask for the live probe, and how often it runs, is proven in
tests/security/test_least_privilege.py; here each deep check sends a key and starts afresh.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.test import override_settings

from proxy import health
from tests.support.constants import UPSTREAM_KEY
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey


@pytest.fixture(autouse=True)
def _no_earlier_probe() -> Iterator[None]:
    health.probes.clear()
    yield
    health.probes.clear()


def get_health(
    proxy_url: str, key: IssuedKey | None = None, **params: str
) -> tuple[int, dict[str, Any]]:
    headers = {"x-api-key": key.key} if key else {}
    response = httpx.get(f"{proxy_url}/health", params=params, headers=headers, timeout=30)
    body: dict[str, Any] = response.json()
    assert UPSTREAM_KEY not in response.text
    return response.status_code, body


def test_healthy_when_every_component_is(
    proxy_url: str, seeded_rules: None, upstream: FakeAnthropic
) -> None:
    status, body = get_health(proxy_url)
    assert status == 200
    assert body["status"] == "healthy"
    components = body["components"]
    assert components["database"]["status"] == "healthy"
    assert components["mapping_store"]["connected"] is True
    assert components["patterns"]["patterns_enabled"] >= 30
    assert components["upstream"] == {
        "status": "healthy",
        "default_route": True,
        "routes_enabled": 0,
        "routes_missing_credentials": 0,
        "credentials_configured": True,
        "host": "127.0.0.1",
    }
    assert upstream.requests == []  # no live call unless asked


def test_deep_check_makes_one_minimal_live_call(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    status, body = get_health(proxy_url, api_key, deep="1")
    assert (status, body["components"]["upstream"]["probe"]) == (200, "healthy")
    assert len(upstream.requests) == 1
    assert upstream.requests[0].json is not None
    assert upstream.requests[0].json["max_tokens"] == 1


@pytest.mark.parametrize(("base", "probe"), [("closed", "error"), ("slow", "timeout")])
def test_deep_check_reports_a_failing_provider_as_degraded(
    proxy_url: str,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    closed_port: int,
    base: str,
    probe: str,
) -> None:
    overrides: dict[str, Any] = (
        {"PROXY_UPSTREAM_BASE_URL": f"http://127.0.0.1:{closed_port}"}
        if base == "closed"
        else {"PROXY_HEALTH_MODEL": "fake-slow", "PROXY_HEALTH_PROBE_TIMEOUT": 0.5}
    )
    with override_settings(**overrides):
        status, body = get_health(proxy_url, api_key, deep="1")
    assert status == 200
    assert body["status"] == "degraded"
    assert body["components"]["upstream"]["probe"] == probe


def test_missing_credentials_are_degraded_not_down(proxy_url: str, seeded_rules: None) -> None:
    with override_settings(ANTHROPIC_API_KEY=None):
        status, body = get_health(proxy_url)
    assert (status, body["status"]) == (200, "degraded")
    assert body["components"]["upstream"]["credentials_configured"] is False


def test_no_enabled_rules_make_it_unhealthy(proxy_url: str, seeded_rules: None) -> None:
    from patterns.models import Pattern
    from patterns.services import rules_changed

    Pattern.objects.update(enabled=False)
    rules_changed()
    status, body = get_health(proxy_url)
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["components"]["patterns"]["status"] == "unhealthy"


def test_a_key_can_be_required(proxy_url: str, api_key: IssuedKey) -> None:
    with override_settings(HEALTH_REQUIRES_KEY=True, METRICS_TOKEN="scrape-secret"):
        assert httpx.get(f"{proxy_url}/health", timeout=30).status_code == 401
        response = httpx.get(f"{proxy_url}/health", headers={"x-api-key": api_key.key}, timeout=30)
        assert response.status_code == 200
        # The operator's monitoring may use the metrics token instead.
        token = {"Authorization": "Bearer scrape-secret"}
        assert httpx.get(f"{proxy_url}/health", headers=token, timeout=30).status_code == 200
