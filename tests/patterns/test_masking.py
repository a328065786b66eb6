"""Masking through the seeded library and the real Redis store, by the functions the proxy's
request path calls (arules_snapshot, amask_texts)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import pytest
from asgiref.sync import async_to_sync

from patterns import services
from patterns.engine import unmask
from patterns.services import MaskedTexts, amask_texts, arules_snapshot
from patterns.store import build_async_store, get_store
from tests.support.constants import KOREAN_REPORT, KOREAN_REPORT_VALUES

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rules() -> Iterator[None]:
    services._current = None
    get_store.cache_clear()
    yield
    services._current = None


@async_to_sync
async def masked_as_a_request(*, namespace: str, texts: Sequence[str]) -> MaskedTexts:
    """As a request masks its texts: the rules for the version in Redis, then one allocation
    (async_to_sync runs the rules' database read on this thread, inside the test's
    transaction)."""
    store = build_async_store()
    try:
        snapshot = await arules_snapshot(store.control)
        return await amask_texts(namespace=namespace, texts=texts, snapshot=snapshot, store=store)
    finally:
        await store.aclose()


def test_the_korean_report_is_masked_restored_and_stable(namespace: str) -> None:
    first = masked_as_a_request(namespace=namespace, texts=[KOREAN_REPORT])
    masked = first.texts[0]
    for value in KOREAN_REPORT_VALUES:
        assert value not in masked
    assert len(first.restore) == len(KOREAN_REPORT_VALUES)
    assert unmask(masked, first.restore) == KOREAN_REPORT
    placeholder_of = {value: placeholder for placeholder, value in first.restore.items()}
    later = masked_as_a_request(
        namespace=namespace, texts=["다시: i-abcdef1234567890a, vpc-12345678"]
    )
    expected = f"다시: {placeholder_of['i-abcdef1234567890a']}, {placeholder_of['vpc-12345678']}"
    assert later.texts == (expected,)


def test_texts_of_one_request_share_placeholders(namespace: str) -> None:
    result = masked_as_a_request(
        namespace=namespace, texts=["system: vpc-12345678", "user: vpc-12345678 and sg-12345678"]
    )
    assert result.texts == ("system: AWS_VPC_001", "user: AWS_VPC_001 and AWS_SG_001")
    assert result.counts == {"aws_vpc_id": 2, "aws_security_group_id": 1}


def test_no_value_reaches_the_logs(namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    result = masked_as_a_request(namespace=namespace, texts=[KOREAN_REPORT])
    unmask(result.texts[0], result.restore)
    for value in KOREAN_REPORT_VALUES:
        assert value not in caplog.text
