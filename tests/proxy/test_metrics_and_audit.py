"""Prometheus metrics, audit records for refused requests, and pruning old records."""

from __future__ import annotations

import contextlib
import io
from datetime import timedelta

import anthropic
import httpx
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from proxy.models import AuditRecord
from proxy.upstream import known_anthropic_models
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey, wait_for_audit

# A name the default route serves from LiteLLM's list of Anthropic models: the metrics keep it
# as their model label (any other name is "other").
KNOWN_MODEL = min(known_anthropic_models())


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_masked_values_and_upstream_errors(
    proxy_url: str, client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    before = httpx.get(f"{proxy_url}/metrics", timeout=30).text
    client.messages.create(
        model=KNOWN_MODEL,  # the fake echoes any model it has no scenario for
        max_tokens=10,
        messages=[{"role": "user", "content": "i-1234567890abcdef0"}],
    )
    with contextlib.suppress(anthropic.APIStatusError):
        client.messages.create(
            model="fake-error-529", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    wait_for_audit(2)
    after = httpx.get(f"{proxy_url}/metrics", timeout=30).text
    labels = {"endpoint": "messages", "model": KNOWN_MODEL, "status": "200", "stream": "false"}
    assert metric_value(after, "maskproxy_requests_total", **labels) == (
        metric_value(before, "maskproxy_requests_total", **labels) + 1
    )
    pattern = {"pattern": "aws_ec2_instance_id"}
    assert metric_value(after, "maskproxy_masked_values_total", **pattern) >= 1 + metric_value(
        before, "maskproxy_masked_values_total", **pattern
    )
    error = {"status": "529", "type": "overloaded_error"}
    assert metric_value(after, "maskproxy_upstream_errors_total", **error) == (
        metric_value(before, "maskproxy_upstream_errors_total", **error) + 1
    )
    # No route or catalogue knows fake-error-529: counted, under "other".
    other = {"endpoint": "messages", "model": "other", "status": "529", "stream": "false"}
    assert metric_value(after, "maskproxy_requests_total", **other) == (
        metric_value(before, "maskproxy_requests_total", **other) + 1
    )
    assert 'model="fake-error-529"' not in after
    assert "i-1234567890abcdef0" not in after


def test_metrics_can_require_a_token(proxy_url: str) -> None:
    with override_settings(METRICS_TOKEN="scrape-secret"):
        assert httpx.get(f"{proxy_url}/metrics", timeout=30).status_code == 401
        wrong = httpx.get(f"{proxy_url}/metrics", headers={"Authorization": "Bearer x"}, timeout=30)
        assert wrong.status_code == 401
        right = httpx.get(
            f"{proxy_url}/metrics", headers={"Authorization": "Bearer scrape-secret"}, timeout=30
        )
        assert right.status_code == 200


def test_refused_requests_are_audited_too(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    response = httpx.post(
        f"{proxy_url}/v1/messages", content=b"{oops", headers={"x-api-key": api_key.key}, timeout=30
    )
    assert response.status_code == 400
    record = wait_for_audit()[0]
    assert (record.status, record.error_type, record.key_prefix) == (
        400,
        "invalid_request_error",
        api_key.record.prefix,
    )


def test_prune_removes_only_records_past_retention(transactional_db: None) -> None:
    now = timezone.now()
    for days in (1, 89, 91, 400):
        AuditRecord.objects.create(
            created_at=now - timedelta(days=days), endpoint="messages", status=200
        )
    out = io.StringIO()
    call_command("prune_audit", "--dry-run", stdout=out)
    assert "2 audit records" in out.getvalue()
    call_command("prune_audit", stdout=out)
    assert AuditRecord.objects.count() == 2
    call_command("prune_audit", "--days", "30", stdout=out)
    assert AuditRecord.objects.count() == 1
