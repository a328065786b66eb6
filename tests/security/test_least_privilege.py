"""Least privilege: each finding of the penetration test as a test that failed before its fix.

- Staff users without any permission saw every API key's name, prefix and usage on
  /dashboard/: the page now needs proxy.view_auditrecord (403 without it), and its per-key
  parts proxy.view_apikey as well (hidden, and not computed, without it); the audit trail in
  the admin likewise shows, filters and searches by key only with proxy.view_apikey.
- The same users could confirm guessed sensitive terms on the admin's "Try the rules" page:
  it now needs patterns.try_rules (403 without it).
- Anonymous GET /health?deep=1 made a paid provider call per hit: the live probe now needs a
  proxy API key or the metrics token (401 in Anthropic's error shape, and nothing sent to the
  provider, without one), and a process makes at most one probe per
  HEALTH_PROBE_CACHE_SECONDS however many callers ask. Plain /health stays open.
- The metrics' model label took any string a client sent: 1,000 requests made 2,000 new time
  series. It now takes only names the routes or the catalogue know ("other" for the rest), so
  1,000 random names add a constant number of series; the audit rows still hold the names.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse

from patterns.models import SensitiveTerm
from proxy import health
from proxy.catalog import is_known_model
from proxy.keys import generate_key
from proxy.models import ApiKey, AuditRecord
from proxy.routes import PASS_THROUGH, Route, build_table
from proxy.upstream import known_anthropic_models
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey, wait_for_audit

DASHBOARD = "/dashboard/"
TRY_RULES = "admin:patterns_pattern_test"
GUESSED_TERM = "project-falcon"


def logged_in(*permissions: str, superuser: bool = False) -> Client:
    """A client logged in as a staff user holding exactly these permissions (app.codename)."""
    if superuser:
        user = User.objects.create_superuser("root", "root@invalid", "pw")
    else:
        user = User.objects.create_user("staff", password="pw", is_staff=True)
        user.user_permissions.add(*_permissions(permissions))
    client = Client()
    client.force_login(user)
    return client


def _permissions(names: Iterable[str]) -> list[Permission]:
    found = []
    for name in names:
        app_label, _, codename = name.partition(".")
        found.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return found


# --- the dashboard ---------------------------------------------------------------------------


@pytest.fixture
def keys(db: None) -> list[ApiKey]:
    """Two keys with one request each in the audit trail."""
    made = []
    for name in ("payments-team", "research-team"):
        new = generate_key()
        key = ApiKey.objects.create(name=name, prefix=new.prefix, key_hash=new.digest)
        AuditRecord.objects.create(
            api_key=key,
            key_prefix=key.prefix,
            key_name=key.name,
            namespace=key.effective_namespace,
            endpoint="messages",
            model="claude-sonnet-4-5",
            status=200,
            masked_total=1,
            masked_by_pattern={"aws_ec2_instance_id": 1},
        )
        made.append(key)
    return made


def total_requests(page: str) -> int:
    found = re.search(r'id="total-requests">.*?class="count">(\d+)<', page)
    assert found is not None
    return int(found.group(1))


def shows_any_key(page: str, keys: list[ApiKey]) -> bool:
    return any(key.name in page or key.prefix in page for key in keys)


@pytest.mark.parametrize("permissions", [(), ("proxy.view_apikey",)])
def test_staff_without_the_audit_permission_get_403_from_the_dashboard(
    keys: list[ApiKey], permissions: tuple[str, ...]
) -> None:
    response = logged_in(*permissions).get(DASHBOARD)
    assert response.status_code == 403
    assert not shows_any_key(response.content.decode(), keys)


def test_staff_who_may_view_audit_records_see_counts_but_no_api_key(keys: list[ApiKey]) -> None:
    client = logged_in("proxy.view_auditrecord")
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    page = response.content.decode()
    assert total_requests(page) == 2
    assert 'id="masked-by-pattern"' in page
    assert 'id="usage-by-key"' not in page
    assert 'id="live-mappings"' not in page
    assert 'name="key"' not in page  # not even the key filter's list of names
    assert not shows_any_key(page, keys)
    # A key asked for in the query string is ignored: no per-key count through the back door.
    filtered = client.get(DASHBOARD, {"key": keys[0].pk}).content.decode()
    assert total_requests(filtered) == 2
    assert not shows_any_key(filtered, keys)


@pytest.mark.parametrize("superuser", [False, True])
def test_users_who_may_view_api_keys_too_see_usage_per_key(
    keys: list[ApiKey], superuser: bool
) -> None:
    client = (
        logged_in(superuser=True)
        if superuser
        else logged_in("proxy.view_auditrecord", "proxy.view_apikey")
    )
    page = client.get(DASHBOARD).content.decode()
    assert 'id="usage-by-key"' in page and 'id="live-mappings"' in page
    for key in keys:
        assert f'data-key-prefix="{key.prefix}"' in page
        assert key.name in page
    filtered = client.get(DASHBOARD, {"key": keys[0].pk}).content.decode()
    assert total_requests(filtered) == 1


@pytest.mark.parametrize(
    ("permissions", "linked"), [((), False), (("proxy.view_auditrecord",), True)]
)
def test_the_admin_links_to_the_dashboard_only_for_users_who_may_see_it(
    db: None, permissions: tuple[str, ...], linked: bool
) -> None:
    page = logged_in(*permissions).get(reverse("admin:index")).content.decode()
    assert (f'href="{DASHBOARD}"' in page) is linked


@pytest.mark.parametrize("may_view_keys", [False, True])
def test_the_audit_trail_names_the_key_only_for_users_who_may_view_api_keys(
    keys: list[ApiKey], may_view_keys: bool
) -> None:
    permissions = ["proxy.view_auditrecord"] + (["proxy.view_apikey"] if may_view_keys else [])
    client = logged_in(*permissions)
    changelist = reverse("admin:proxy_auditrecord_changelist")
    record = AuditRecord.objects.get(api_key=keys[0])
    record_url = reverse("admin:proxy_auditrecord_change", args=[record.pk])
    listed = client.get(changelist)
    detail = client.get(record_url)
    assert (listed.status_code, detail.status_code) == (200, 200)
    assert shows_any_key(listed.content.decode(), keys) is may_view_keys
    assert shows_any_key(detail.content.decode(), [keys[0]]) is may_view_keys
    # Searching by a key's name must not confirm it either.
    found = client.get(changelist, {"q": keys[0].name}).content.decode()
    assert (record_url in found) is may_view_keys


# --- "Try the rules" -------------------------------------------------------------------------


def try_rules(client: Client) -> tuple[int, int, str]:
    """The statuses of the page and of a guess posted to it, and the answer's text."""
    SensitiveTerm.objects.get_or_create(term=GUESSED_TERM, placeholder_prefix="CODE_NAME")
    url = reverse(TRY_RULES)
    shown = client.get(url).status_code
    answer = client.post(url, {"text": f"is {GUESSED_TERM} a code name?"})
    return shown, answer.status_code, answer.content.decode()


def test_staff_without_the_try_rules_permission_get_403_from_try_the_rules(
    seeded_rules: None,
) -> None:
    # Even those who may view the rules: the page answers for any guess, so it is granted apart.
    client = logged_in("patterns.view_pattern", "patterns.view_sensitiveterm")
    shown, answered, answer = try_rules(client)
    assert (shown, answered) == (403, 403)
    assert "CODE_NAME_001" not in answer
    changelist = client.get(reverse("admin:patterns_pattern_changelist")).content.decode()
    assert reverse(TRY_RULES) not in changelist


@pytest.mark.parametrize("superuser", [False, True])
def test_users_granted_try_rules_can_try_the_rules(seeded_rules: None, superuser: bool) -> None:
    client = (
        logged_in(superuser=True)
        if superuser
        else logged_in("patterns.try_rules", "patterns.view_pattern")
    )
    shown, answered, answer = try_rules(client)
    assert (shown, answered) == (200, 200)
    assert "is CODE_NAME_001 a code name?" in answer
    changelist = client.get(reverse("admin:patterns_pattern_changelist")).content.decode()
    assert reverse(TRY_RULES) in changelist


# --- /health?deep=1 --------------------------------------------------------------------------

METRICS_TOKEN = "scrape-token-for-tests"


@pytest.fixture
def no_earlier_probe() -> Iterator[None]:
    """Each test starts without a probe result a test before it left in the live proxy."""
    health.probes.clear()
    yield
    health.probes.clear()


def get_health(proxy_url: str, headers: dict[str, str] | None = None, **params: str) -> Any:
    return httpx.get(f"{proxy_url}/health", params=params, headers=headers or {}, timeout=30)


def probes_sent(upstream: FakeAnthropic) -> int:
    """The live calls the provider received (a probe asks for one token)."""
    return sum(1 for request in upstream.requests if (request.json or {}).get("max_tokens") == 1)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-key-nor-the-token"}, {"x-api-key": "sk-wrong"}],
    ids=["anonymous", "wrong-bearer", "wrong-key"],
)
def test_deep_health_without_credentials_gets_401_and_makes_no_provider_call(
    proxy_url: str,
    seeded_rules: None,
    upstream: FakeAnthropic,
    no_earlier_probe: None,
    headers: dict[str, str],
) -> None:
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        response = get_health(proxy_url, headers, deep="1")
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert upstream.requests == []


def test_plain_health_stays_open_and_makes_no_provider_call(
    proxy_url: str, seeded_rules: None, upstream: FakeAnthropic, no_earlier_probe: None
) -> None:
    response = get_health(proxy_url)
    assert response.status_code == 200
    assert "probe" not in response.json()["components"]["upstream"]
    assert upstream.requests == []


def test_deep_health_with_an_api_key_probes_the_provider(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, no_earlier_probe: None
) -> None:
    response = get_health(proxy_url, {"x-api-key": api_key.key}, deep="1")
    assert response.status_code == 200
    probe = response.json()["components"]["upstream"]
    assert (probe["probe"], probe["probe_cached"]) == ("healthy", False)
    assert probes_sent(upstream) == 1


def test_deep_health_with_the_metrics_token_probes_the_provider(
    proxy_url: str, seeded_rules: None, upstream: FakeAnthropic, no_earlier_probe: None
) -> None:
    with override_settings(METRICS_TOKEN=METRICS_TOKEN):
        response = get_health(proxy_url, {"Authorization": f"Bearer {METRICS_TOKEN}"}, deep="1")
    assert response.status_code == 200
    assert response.json()["components"]["upstream"]["probe"] == "healthy"
    assert probes_sent(upstream) == 1


def test_an_operator_can_open_deep_health_to_anyone(
    proxy_url: str, seeded_rules: None, upstream: FakeAnthropic, no_earlier_probe: None
) -> None:
    with override_settings(HEALTH_DEEP_OPEN=True):
        response = get_health(proxy_url, deep="1")
    assert response.status_code == 200
    assert response.json()["components"]["upstream"]["probe"] == "healthy"
    assert probes_sent(upstream) == 1


def test_repeated_deep_probes_within_the_cache_window_make_one_provider_call(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, no_earlier_probe: None
) -> None:
    headers = {"x-api-key": api_key.key}
    # Concurrent callers share the probe that is running; later ones its result.
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda _: get_health(proxy_url, headers, deep="1"), range(8)))
    sequential = [get_health(proxy_url, headers, deep="1") for _ in range(12)]
    responses = concurrent + sequential
    assert {response.status_code for response in responses} == {200}
    answers = [response.json()["components"]["upstream"] for response in responses]
    assert {answer["probe"] for answer in answers} == {"healthy"}
    assert [answer["probe_cached"] for answer in answers].count(False) == 1
    assert probes_sent(upstream) == 1


def test_the_provider_is_probed_again_once_the_cache_window_has_passed(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, no_earlier_probe: None
) -> None:
    headers = {"x-api-key": api_key.key}
    with override_settings(HEALTH_PROBE_CACHE_SECONDS=1.0):
        get_health(proxy_url, headers, deep="1")
        get_health(proxy_url, headers, deep="1")
        assert probes_sent(upstream) == 1
        time.sleep(1.1)
        response = get_health(proxy_url, headers, deep="1")
    assert response.json()["components"]["upstream"]["probe_cached"] is False
    assert probes_sent(upstream) == 2


# --- /metrics: the model label ---------------------------------------------------------------

RANDOM_NAMES = 1000


def series(exposition: str) -> set[str]:
    """Every time series /metrics lists (its name and labels, without its value)."""
    return {
        line.rsplit(" ", 1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


def requests_counted(exposition: str, **labels: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith("maskproxy_requests_total{") and all(
            f'{name}="{value}"' in line for name, value in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ask_for(client: httpx.Client, model: str) -> None:
    hello = [{"role": "user", "content": "hi"}]
    response = client.post(
        "/v1/messages", json={"model": model, "max_tokens": 5, "messages": hello}
    )
    assert response.status_code == 200


@pytest.mark.slow
def test_a_thousand_random_model_names_add_a_constant_number_of_series(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    # Letters only: random hex is sometimes all digits, and a 16-digit name that passes the
    # card checksum is a value the rules refuse in a model name.
    names = [
        "model-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))
        for _ in range(RANDOM_NAMES + 1)
    ]
    headers = {"x-api-key": api_key.key}
    with httpx.Client(base_url=proxy_url, headers=headers, timeout=30) as client:
        # The first request of the process creates its series (the "other" label's, the
        # histograms'): a constant. The thousand after it must not add a single one.
        ask_for(client, names[0])
        wait_for_audit(1)
        before = client.get("/metrics").text
        for name in names[1:]:
            ask_for(client, name)
        records = wait_for_audit(RANDOM_NAMES + 1)
        after = client.get("/metrics").text
    assert series(after) - series(before) == set()
    assert not any(name in after for name in names)
    other = requests_counted(after, model="other") - requests_counted(before, model="other")
    assert other == RANDOM_NAMES
    # The audit trail keeps what each request asked for: only the label set is bounded.
    assert {record.model for record in records} == set(names)


def test_only_names_the_routes_or_the_catalogue_know_are_labels() -> None:
    anthropic_model = min(known_anthropic_models())
    table = build_table(
        "v1",
        [
            Route(id=1, pattern="team-model", litellm_model="openai/gpt-4o"),
            Route(id=2, pattern="gpt-*", litellm_model="openai/{model}"),
            Route(id=3, pattern="claude-*", litellm_model=PASS_THROUGH),
        ],
        default_route=True,
    )
    assert is_known_model(table, "team-model")  # an exact route's name
    assert is_known_model(table, anthropic_model)  # Anthropic's, through a pass-through route
    for chosen_by_a_client in (
        "gpt-4o-i-0123456789abcdef0",  # any name a pattern route takes
        "claude-anything-at-all",
        f"{anthropic_model}-{secrets.token_hex(4)}",
        "(masked)",  # what proxy.services.model_label makes of a name holding a value
        "",
    ):
        assert not is_known_model(table, chosen_by_a_client), chosen_by_a_client
    no_default = build_table("v1", [], default_route=False)
    assert not is_known_model(no_default, anthropic_model)  # refused, so not served
