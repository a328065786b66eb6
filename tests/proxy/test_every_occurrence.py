"""Whole-request consistency through the live proxy: a value found with its context in one
turn is masked where a later turn names it bare (in the same request, and in the namespace's
later requests), and Korean lists of AWS resources with particles (에, 와, 를, 은) glued to
each value leave nothing and come back exactly (SDK -> proxy -> LiteLLM -> fake)."""

from __future__ import annotations

import anthropic
import pytest

from proxy.keys import generate_key
from proxy.models import ApiKey
from tests.support.fakes.anthropic_upstream import FakeAnthropic

TURN_1 = (
    "Here is the output of `aws s3api get-bucket-location`:\n"
    '{"Bucket": "acme-prod-logs-2025", "Owner": {"ID": "123456789012"}}\n'
    'and the config: "Account": "123456789012"'
)
TURN_3 = "now delete acme-prod-logs-2025 and check 123456789012:deployer can no longer list it"
VALUES = ("acme-prod-logs-2025", "123456789012")

KOREAN_VARIANTS = (
    "- EC2: i-1234567890abcdef0, i-abcdef1234567890a\n"
    "- S3: company-data-bucket, backup-logs-bucket\n",
    "S3: company-data-bucket에, backup-logs-bucket에 업로드가 실패합니다",
    "버킷: company-data-bucket와 backup-logs-bucket를 비교해 주세요",
    "EC2 i-1234567890abcdef0의 로그를 S3: company-data-bucket에 올렸고, "
    "backup-logs-bucket은 비었습니다",
)
KOREAN_VALUES = (
    "i-1234567890abcdef0",
    "i-abcdef1234567890a",
    "company-data-bucket",
    "backup-logs-bucket",
)


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_a_later_turn_names_a_value_bare_and_the_provider_never_sees_it(
    client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    message = client.messages.create(
        model="fake-echo",
        max_tokens=200,
        messages=[
            {"role": "user", "content": TURN_1},
            {"role": "assistant", "content": "The bucket is in us-east-1."},
            {"role": "user", "content": TURN_3},
        ],
    )
    assert text_of(message) == "You said: " + TURN_3
    sent = upstream.raw_bodies()
    for value in VALUES:
        assert value.encode() not in sent, value


@pytest.mark.parametrize("text", KOREAN_VARIANTS)
def test_korean_lists_with_particles_leave_nothing_and_round_trip(
    client: anthropic.Anthropic, upstream: FakeAnthropic, text: str
) -> None:
    with client.messages.stream(
        model="fake-echo", max_tokens=200, messages=[{"role": "user", "content": text}]
    ) as stream:
        streamed = "".join(stream.text_stream)
    assert streamed == "You said: " + text
    sent = upstream.raw_bodies()
    for value in KOREAN_VALUES:
        assert value.encode() not in sent, value


def _said(client: anthropic.Anthropic, text: str) -> str:
    with client.messages.stream(
        model="fake-echo", max_tokens=200, messages=[{"role": "user", "content": text}]
    ) as stream:
        return "".join(stream.text_stream)


def test_a_value_learned_in_one_request_is_masked_bare_in_the_namespaces_next_ones(
    proxy_url: str, client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    assert _said(client, TURN_1) == "You said: " + TURN_1
    later = "now delete acme-prod-logs-2025, then tell 123456789012:deployer"
    upstream.clear()
    assert _said(client, later) == "You said: " + later  # a new conversation, no context
    sent = upstream.raw_bodies()
    for value in VALUES:
        assert value.encode() not in sent, value
    # Another namespace never learned them: there they are ordinary words.
    new = generate_key()
    ApiKey.objects.create(name="another-tenant", prefix=new.prefix, key_hash=new.digest)
    upstream.clear()
    with anthropic.Anthropic(base_url=proxy_url, api_key=new.key, max_retries=0) as other:
        assert _said(other, "now delete acme-prod-logs-2025") == (
            "You said: now delete acme-prod-logs-2025"
        )
    assert b"acme-prod-logs-2025" in upstream.raw_bodies()


def test_a_learned_word_that_could_be_ordinary_text_is_not_masked_bare_later(
    client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    _said(client, 'the bucket: "archive" holds the backups')
    assert b"archive" not in upstream.raw_bodies()  # masked there, by its context
    upstream.clear()
    _said(client, "please archive the old tickets")
    assert b"please archive the old tickets" in upstream.raw_bodies()
