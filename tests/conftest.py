"""Shared fixtures: a real Redis (own key prefix, cleaned up after the run), a test database
that nothing of ours is still connected to when pytest-django drops it, and the fixtures of
tests/support registered once (`pytest_plugins`)."""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from django.apps import apps as django_apps
from django.conf import settings
from django.db import connections
from django.db.backends.postgresql import base as postgresql
from psycopg.conninfo import make_conninfo
from pytest_django import DjangoDbBlocker

from patterns.models import Pattern
from patterns.store import MappingStore, cipher_from_settings
from proxy import audit
from tests.support.processes import free_port

# The shared fixtures, registered once for every suite: a fixture imported into several
# conftest modules would start one server per module, each overriding the settings of the
# others. Test modules import helpers from tests.support, never from a conftest.
pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.live",
    "tests.support.e2e",
    "tests.support.browser",
    "tests.support.dashboard",
]

# How long the session's end waits for other connections to the test database to close.
DISCONNECT_TIMEOUT = 10.0


def _redis_url() -> str:
    return str(settings.CACHES["default"]["LOCATION"])


def _key_prefix() -> str:
    return str(settings.CACHES["default"]["KEY_PREFIX"])


def _delete_our_keys(connection: redis.Redis) -> None:
    """Delete this run's keys only: the server may be shared."""
    for key in connection.scan_iter(match=f"{_key_prefix()}:*", count=1000):
        connection.delete(key)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove this run's Redis keys, also when no test asked for redis_client (the live
    proxy's requests write mappings too), and the SQLite write-ahead files pytest-django
    leaves beside its deleted database."""
    try:
        with redis.Redis.from_url(_redis_url(), socket_timeout=5) as connection:
            _delete_our_keys(connection)
    except redis.RedisError:
        pass  # no Redis answers: nothing of ours is in it
    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if not name or Path(name).exists():
        return
    for suffix in ("-wal", "-shm"):
        Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[None]:
    """pytest-django's test database; at the end, nothing of ours connected to it.

    PostgreSQL will not drop a database while a session is connected to it, and the audit
    writer keeps its connection for a second after its last batch: write what is queued, then
    wait for every other connection to close, naming any that does not.
    """
    yield
    with django_db_blocker.unblock():
        audit.flush_audit(timeout=30)
        connections.close_all()
        database = connections["default"]
        if isinstance(database, postgresql.DatabaseWrapper):
            # Django closes the pool itself before dropping the database; close it now so
            # that only connections something still holds are left to wait for.
            database.close_pool()  # type: ignore[attr-defined]  # Django 5.1+; not in the stubs
            _wait_for_other_sessions_to_leave(database.settings_dict)


def _wait_for_other_sessions_to_leave(settings_dict: dict[str, Any]) -> None:
    name = settings_dict["NAME"]
    conninfo = make_conninfo(
        dbname="postgres",
        host=settings_dict["HOST"] or None,
        port=settings_dict["PORT"] or None,
        user=settings_dict["USER"] or None,
        password=settings_dict["PASSWORD"] or None,
    )
    # From the "postgres" database, where Django runs its DROP DATABASE. In autocommit: a
    # transaction would keep reading the same snapshot of pg_stat_activity.
    with psycopg.connect(conninfo, autocommit=True) as admin:
        deadline = time.monotonic() + DISCONNECT_TIMEOUT
        while True:
            sessions = admin.execute(
                "SELECT pid, state, left(query, 80) FROM pg_stat_activity WHERE datname = %s",
                [name],
            ).fetchall()
            if not sessions or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if sessions:
            # Ours, on our own database: end them, so that the database is still dropped
            # rather than left on a shared server, and fail the run.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [name],
            )
    if sessions:
        raise RuntimeError(
            f"still connected to the test database {name} after {DISCONNECT_TIMEOUT} s "
            f"(pid, state, last query): {sessions}"
        )


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(_redis_url())
    try:
        connection.ping()
    except redis.ConnectionError:
        pytest.fail(f"The tests need a Redis server; none answers at {_redis_url()}.")
    yield connection
    _delete_our_keys(connection)
    connection.close()


@pytest.fixture
def seeded_rules(transactional_db: None) -> None:
    """The default library, put back if an earlier transactional test flushed it."""
    if not Pattern.objects.exists():
        seed = importlib.import_module("patterns.migrations.0002_seed_default_library").seed
        seed(django_apps, None)


@pytest.fixture
def namespace() -> str:
    return f"ns-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(redis_client: redis.Redis) -> MappingStore:
    return MappingStore(
        redis_client,
        cipher_from_settings(),
        ttl=settings.MAPPING_TTL_SECONDS,
        key_prefix=_key_prefix(),
    )


@pytest.fixture
def closed_port() -> int:
    """A local TCP port with nothing listening on it."""
    return free_port()
