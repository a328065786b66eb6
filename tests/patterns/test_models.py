"""Rules in the database: the seeded library, loading snapshots, failing closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import override_settings

from patterns import services
from patterns.engine import Snapshot
from patterns.library import DEFAULT_PATTERNS
from patterns.models import AllowedValue, Pattern, SensitiveTerm
from patterns.services import RulesUnavailable, arules_snapshot, load_snapshot
from patterns.store import ControlStoreUnavailable, build_async_store, get_store

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rules() -> Iterator[None]:
    services._current = None
    yield
    services._current = None
    get_store.cache_clear()


@async_to_sync
async def request_rules() -> Snapshot:
    """The rules as a request gets them, on a store of its own (async_to_sync runs the
    database read on this thread, inside the test's transaction)."""
    store = build_async_store()
    try:
        return await arules_snapshot(store.control)
    finally:
        await store.aclose()


def test_every_library_entry_is_seeded_and_passes_its_own_examples() -> None:
    assert Pattern.objects.count() == len(DEFAULT_PATTERNS)
    for pattern in Pattern.objects.all():
        pattern.full_clean()  # compiles, and checks the positive and negative examples


def test_snapshot_holds_enabled_rules_only() -> None:
    Pattern.objects.filter(name=DEFAULT_PATTERNS[0].name).update(enabled=False)
    SensitiveTerm.objects.create(term="falcon", placeholder_prefix="CODE_NAME", enabled=False)
    AllowedValue.objects.create(value="i-00000000")
    snapshot = load_snapshot()
    names = {c.spec.name for c in snapshot.patterns}
    assert DEFAULT_PATTERNS[0].name not in names
    assert len(names) == len(DEFAULT_PATTERNS) - 1
    assert snapshot.terms == ()
    assert snapshot.allowed == frozenset({"i-00000000"})


def test_snapshot_is_reused_until_the_version_moves() -> None:
    first = request_rules()
    assert request_rules() is first
    get_store().control.bump_rules_version()
    second = request_rules()
    assert second is not first
    assert second.version != first.version


def test_a_broken_rule_in_the_database_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    Pattern.objects.create(name="broken", regex="(?<=x)y", placeholder_prefix="BROKEN")
    with pytest.raises(RulesUnavailable, match="could not be compiled"):
        load_snapshot()
    assert "broken" in caplog.text


def test_rules_fail_closed_when_redis_is_unreachable(closed_port: int) -> None:
    caches = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {
                **settings.CACHES["default"]["OPTIONS"],
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }
    get_store.cache_clear()
    with override_settings(CACHES=caches), pytest.raises(ControlStoreUnavailable):
        request_rules()


def test_no_enabled_rule_at_all_fails_closed() -> None:
    Pattern.objects.update(enabled=False)
    with pytest.raises(RulesUnavailable, match="No masking rule"):
        load_snapshot()
    SensitiveTerm.objects.create(term="falcon")
    assert load_snapshot().patterns == ()
