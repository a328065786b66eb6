"""Shared fixtures: a real Redis (own key prefix, cleaned up after the run)."""

from __future__ import annotations

import importlib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.apps import apps as django_apps
from django.conf import settings

from patterns.models import Pattern
from patterns.store import MappingStore, cipher_from_settings


def _redis_url() -> str:
    return str(settings.CACHES["default"]["LOCATION"])


def _key_prefix() -> str:
    return str(settings.CACHES["default"]["KEY_PREFIX"])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the SQLite write-ahead files pytest-django leaves beside its deleted database."""
    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if not name or Path(name).exists():
        return
    for suffix in ("-wal", "-shm"):
        Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(_redis_url())
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"The tests need a Redis server; none answers at {_redis_url()}.")
    yield client
    # Delete this run's keys only: the server may be shared.
    for key in client.scan_iter(match=f"{_key_prefix()}:*", count=1000):
        client.delete(key)
    client.close()


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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
