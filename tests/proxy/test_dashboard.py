"""The operators' dashboard: numbers that match the audit trail, never a value.

Who may see it is proven in tests/security/test_least_privilege.py; the operator here holds
the permissions the whole page needs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from patterns.models import Pattern
from patterns.store import Allocation, MappingStore, cipher_from_settings, get_store
from proxy import charts, selectors
from proxy.keys import generate_key
from proxy.models import ApiKey, AuditRecord
from tests.support.dashboard import URL, table_counts

ROOT = Path(__file__).resolve().parents[2]


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    days_ago: int
    key: str  # "a", "b" or "" for the master key
    status: int = 200
    patterns: dict[str, int] = field(default_factory=dict)
    error_type: str = ""
    latency: int = 100
    upstream: int | None = 80
    stream: bool = False


ROWS = [
    Row(0, "a", patterns={"aws_ec2_instance_id": 3, "ipv4_public": 1}, latency=120),
    Row(1, "a", patterns={"aws_ec2_instance_id": 2}, stream=True, latency=900, upstream=850),
    Row(2, "b", patterns={"aws_access_key_id": 1, "sensitive_term": 2}, latency=40),
    Row(3, "b", status=429, error_type="rate_limit_error", latency=5, upstream=None),
    Row(5, "", patterns={"ipv4_public": 4}, stream=True, latency=300),
    Row(5, "a", status=502, error_type="api_error", latency=2000, upstream=1990),
    Row(20, "a", patterns={"aws_ec2_instance_id": 50, "old_pattern": 7}),
    Row(40, "b", status=500, error_type="api_error", patterns={"aws_access_key_id": 9}),
]


def expected_patterns(rows: list[Row]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for row in rows:
        totals.update(row.patterns)
    return dict(totals)


@pytest.fixture
def keys(db: None) -> dict[str, ApiKey]:
    made = {}
    for name in ("a", "b"):
        new = generate_key()
        made[name] = ApiKey.objects.create(
            name=f"key {name}", prefix=new.prefix, key_hash=new.digest
        )
    return made


@pytest.fixture
def audit_rows(keys: dict[str, ApiKey]) -> list[Row]:
    now = timezone.now()
    for row in ROWS:
        api_key = keys.get(row.key)
        AuditRecord.objects.create(
            created_at=now - timedelta(days=row.days_ago),
            api_key=api_key,
            key_prefix=api_key.prefix if api_key else "master",
            key_name=api_key.name if api_key else "master key",
            namespace=api_key.effective_namespace if api_key else "master",
            endpoint="messages",
            model="claude-sonnet-4-5",
            stream=row.stream,
            status=row.status,
            error_type=row.error_type,
            latency_ms=row.latency,
            upstream_latency_ms=row.upstream,
            masked_total=sum(row.patterns.values()),
            masked_by_pattern=row.patterns,
            restored_total=sum(row.patterns.values()) // 2,
        )
    return ROWS


def page_of(client: Client, params: Mapping[str, str | int] | None = None) -> str:
    response = client.get(URL, params or {})
    assert response.status_code == 200
    return response.content.decode()


# --- access ----------------------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_the_admin_login(db: None) -> None:
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={URL}"


def test_non_staff_user_is_refused(db: None, audit_rows: list[Row]) -> None:
    client = Client()
    client.force_login(User.objects.create_user("visitor", password="pw"))
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert b"masked-by-pattern" not in response.content


def test_admin_index_links_to_the_dashboard(staff_client: Client) -> None:
    page = staff_client.get(reverse("admin:index")).content.decode()
    assert f'href="{URL}"' in page
    assert 'id="content-main"' in page  # the app list is still there


# --- numbers ---------------------------------------------------------------------------------


def test_counts_per_pattern_equal_the_sums_over_the_range(
    staff_client: Client, audit_rows: list[Row], keys: dict[str, ApiKey]
) -> None:
    in_range = [row for row in audit_rows if row.days_ago < 14]
    page = page_of(staff_client)
    assert table_counts(page, "masked-by-pattern", "data-pattern") == expected_patterns(in_range)
    assert re.search(r'id="total-requests">.*?class="count">6<', page)
    assert re.search(r'id="total-masked">.*?class="count">13<', page)
    assert re.search(r'id="total-errors">.*?class="count">2<', page)
    by_key = table_counts(page, "usage-by-key", "data-key-prefix")  # the first count: requests
    assert by_key == {keys["a"].prefix: 3, keys["b"].prefix: 2, "master": 1}
    errors = table_counts(page, "error-breakdown", "data-error-type")
    assert errors == {"rate_limit_error": 1, "api_error": 1}


def test_requests_per_model_show_which_provider_model_served_them(
    staff_client: Client, keys: dict[str, ApiKey]
) -> None:
    served = [
        ("fast", "anthropic/claude-haiku-4-5", 200),
        ("fast", "anthropic/claude-haiku-4-5", 529),
        ("main", "openai/gpt-4o", 200),  # main's route fell back to gpt-4o
        ("main", "", 404),  # no route: never sent
    ]
    for model, upstream_model, status in served:
        AuditRecord.objects.create(
            api_key=keys["a"],
            key_prefix=keys["a"].prefix,
            endpoint="messages",
            model=model,
            upstream_model=upstream_model,
            status=status,
        )
    page = page_of(staff_client)
    requests = table_counts(page, "usage-by-model", "data-upstream-model")
    assert requests == {"anthropic/claude-haiku-4-5": 2, "openai/gpt-4o": 1, "": 1}
    rows = selectors.usage_by_model(start=timezone.localdate(), end=timezone.localdate())
    assert [(r.model, r.upstream_model, r.requests, r.errors) for r in rows] == [
        ("fast", "anthropic/claude-haiku-4-5", 2, 1),
        ("main", "", 1, 1),
        ("main", "openai/gpt-4o", 1, 0),
    ]


def test_categories_come_from_the_pattern_table(
    staff_client: Client, audit_rows: list[Row]
) -> None:
    Pattern.objects.filter(name__in=["aws_ec2_instance_id", "ipv4_public"]).delete()
    Pattern.objects.create(
        name="aws_ec2_instance_id", category="aws_resource", regex="x", placeholder_prefix="EC2"
    )
    Pattern.objects.create(
        name="ipv4_public", category="network", regex="y", placeholder_prefix="IP"
    )
    Pattern.objects.filter(name="aws_access_key_id").delete()
    page = page_of(staff_client)
    assert table_counts(page, "masked-by-category", "data-category") == {
        "AWS resource ID": 5,
        "Network address": 5,
        "Sensitive term": 2,
        "Other": 1,  # aws_access_key_id, no longer a pattern
    }


def test_date_filter_excludes_rows_outside_the_range(
    staff_client: Client, audit_rows: list[Row]
) -> None:
    today = timezone.localdate()
    params = {"start": str(today - timedelta(days=45)), "end": str(today - timedelta(days=15))}
    page = page_of(staff_client, params)
    older = [row for row in audit_rows if 15 <= row.days_ago <= 45]
    assert table_counts(page, "masked-by-pattern", "data-pattern") == expected_patterns(older)
    assert table_counts(page, "error-breakdown", "data-error-type") == {"api_error": 1}
    assert 'id="filter-error"' not in page


def test_key_filter_restricts_every_table(
    staff_client: Client, audit_rows: list[Row], keys: dict[str, ApiKey]
) -> None:
    page = page_of(staff_client, {"key": keys["b"].pk})
    rows_b = [row for row in audit_rows if row.key == "b" and row.days_ago < 14]
    assert table_counts(page, "masked-by-pattern", "data-pattern") == expected_patterns(rows_b)
    assert table_counts(page, "usage-by-key", "data-key-prefix") == {keys["b"].prefix: 2}
    assert table_counts(page, "error-breakdown", "data-error-type") == {"rate_limit_error": 1}
    assert set(table_counts(page, "live-mappings", "data-namespace")) == {
        keys["b"].effective_namespace
    }


@pytest.mark.parametrize(
    "params",
    [
        {"start": "yesterday"},
        {"end": "2024-02-30"},
        {"start": "2024-05-02", "end": "2024-05-01"},
        {"start": "2020-01-01", "end": "2024-01-01"},
        {"key": "999999"},
        {"key": "<script>"},
    ],
)
def test_bad_filter_shows_an_error_and_the_default_range(
    staff_client: Client, audit_rows: list[Row], params: dict[str, str]
) -> None:
    page = page_of(staff_client, params)
    assert 'id="filter-error"' in page
    today = timezone.localdate()
    assert f"{today - timedelta(days=13):%Y-%m-%d} to {today:%Y-%m-%d}" in page
    in_range = [row for row in audit_rows if row.days_ago < 14]
    assert table_counts(page, "masked-by-pattern", "data-pattern") == expected_patterns(in_range)


def test_latency_percentiles_use_nearest_rank(keys: dict[str, ApiKey]) -> None:
    for latency in range(1, 101):
        AuditRecord.objects.create(
            endpoint="messages",
            status=200,
            latency_ms=latency,
            upstream_latency_ms=latency - 1 if latency % 2 else None,
        )
    today = timezone.localdate()
    summary = selectors.latency_percentiles(start=today, end=today)
    assert (summary.total.p50, summary.total.p90, summary.total.p99) == (50, 90, 99)
    assert summary.upstream.samples == 50  # rows without an upstream call are left out
    assert not summary.capped


def test_latency_sample_is_capped_and_the_page_says_so(
    staff_client: Client, audit_rows: list[Row], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "LATENCY_SAMPLE_LIMIT", 2)
    page = page_of(staff_client)
    assert "Computed from the newest 2 requests of the range only." in page
    assert table_counts(page, "latency", "data-measure")["total"] == 120  # p50 of 120 and 900


# --- safety ----------------------------------------------------------------------------------


def test_page_draws_its_charts_inline_and_loads_nothing_from_elsewhere(
    staff_client: Client, audit_rows: list[Row]
) -> None:
    page = page_of(staff_client)
    assert page.count('<svg class="chart" role="img"') == 3
    # Only the admin's own scripts, served from here; the dashboard needs none.
    scripts = re.findall(r"<script[^>]*>", page)
    assert all(re.match(r'<script src="/static/admin/js/[a-z_]+\.js"', tag) for tag in scripts)
    # Resource URLs only: the admin's inline icons carry the SVG namespace, an http URI.
    assert not re.search(r'(?:src|href|action)="(?:https?:)?//', page)
    assert not re.search(r"url\(['\"]?(?:https?:)?//", page)
    assert not re.search(r"@import", page)


def test_pattern_names_are_escaped_in_charts_and_tables(
    staff_client: Client, keys: dict[str, ApiKey]
) -> None:
    hostile = '<script>alert("x")</script>'
    AuditRecord.objects.create(
        endpoint="messages", status=200, masked_total=2, masked_by_pattern={hostile: 2}
    )
    page = page_of(staff_client)
    assert hostile not in page
    assert "&lt;script&gt;" in page
    assert table_counts(page, "masked-by-pattern", "data-pattern") == {hostile: 2}


def test_live_counts_show_per_namespace_and_never_a_value(
    staff_client: Client, redis_client: redis.Redis, namespace: str
) -> None:
    ApiKey.objects.create(name="team", prefix="teamkey1", key_hash="0" * 64, namespace=namespace)
    values = ["i-0123456789abcdef0", "i-abcdef1234567890a", "203.0.113.250"]
    placeholders = get_store().allocate(
        namespace,
        [
            Allocation(values[0], "AWS_EC2", "aws_ec2_instance_id"),
            Allocation(values[1], "AWS_EC2", "aws_ec2_instance_id"),
            Allocation(values[2], "IPV4", "ipv4_public"),
        ],
    )
    page = page_of(staff_client)
    assert table_counts(page, "live-mappings", "data-namespace")[namespace] == 3
    assert 'data-pattern="aws_ec2_instance_id">aws_ec2_instance_id: 2<' in page
    for secret in [*values, *placeholders.values()]:
        assert secret not in page


def test_unreachable_store_is_shown_as_unavailable(
    staff_client: Client, keys: dict[str, ApiKey], closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = MappingStore(
        redis.Redis(host="127.0.0.1", port=closed_port, socket_connect_timeout=1),
        cipher_from_settings(),
        ttl=settings.MAPPING_TTL_SECONDS,
        key_prefix="unused",
    )
    monkeypatch.setattr(selectors, "get_store", lambda: down)
    page = page_of(staff_client)
    assert page.count("Unavailable: the mapping store could not be read.") == 3  # a, b, master


# --- charts (pure) ---------------------------------------------------------------------------


def test_charts_module_loads_no_django() -> None:
    code = "import json, sys; import proxy.charts; print(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert not any(name.split(".")[0] == "django" for name in json.loads(output))


def test_chart_labels_and_titles_are_escaped() -> None:
    hostile = "<script>alert(1)</script>&\"'"
    drawn = [
        charts.bar_chart([(hostile, 3)], title=hostile),
        charts.donut_chart([(hostile, 3)], title=hostile),
        charts.daily_chart(
            ["2025-01-01", hostile], [charts.Series(hostile, (1, 2), "#000")], title=hostile
        ),
        charts.empty_chart(hostile),
    ]
    for svg in drawn:
        assert "<script>" not in svg
        assert "&lt;script&gt;" in svg
        assert 'role="img"' in svg and "<title>" in svg


@pytest.mark.parametrize(
    "svg",
    [
        charts.bar_chart([], title="Per pattern"),
        charts.bar_chart([("a", 0)], title="Per pattern"),
        charts.donut_chart([], title="Per category"),
        charts.daily_chart(
            ["2025-01-01"], [charts.Series("Requests", (0,), "#000")], title="Per day"
        ),
    ],
)
def test_empty_data_renders_a_no_data_state(svg: str) -> None:
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert ">No data<" in svg
    assert "no data" in re.search(r'aria-label="([^"]*)"', svg)[1]  # type: ignore[index]


def test_bar_widths_are_proportional_to_values() -> None:
    svg = charts.bar_chart([("a", 200), ("b", 100), ("c", 50), ("d", 0)], title="Bars")
    widths = [float(w) for w in re.findall(r'class="bar"[^>]* width="([0-9.]+)"', svg)]
    assert widths[0] > 0
    assert [w / widths[0] for w in widths] == pytest.approx([1, 0.5, 0.25, 0])


def test_daily_chart_labels_its_axes() -> None:
    days = [f"2025-01-{day:02d}" for day in range(1, 31)]
    svg = charts.daily_chart(
        days, [charts.Series("Requests", tuple(range(30)), "#417690")], title="Per day"
    )
    assert ">29</text>" in svg  # the top of the value axis
    assert ">01-01</text>" in svg
    assert len(re.findall(r">01-\d\d</text>", svg)) <= 15  # day labels thinned out
    assert svg.count("<rect") == 30
