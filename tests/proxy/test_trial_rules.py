"""Rules on trial: an admin adds a rule that only counts what it would mask (audit rows, the
dashboard), then switches it on; through the live proxy and the dashboard's page."""

from __future__ import annotations

import anthropic
import pytest
from django.test import Client

from patterns.models import Pattern
from proxy.models import AuditRecord
from tests.support.dashboard import URL, table_counts
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import wait_for_audit

TICKET = "TCK-482913"
TEXT = f"close {TICKET} and i-0a1b2c3d4e5f67890 today"


@pytest.fixture
def ticket_rule(seeded_rules: None) -> Pattern:
    rule = Pattern(
        name="ticket_id",
        regex=r"TCK-[0-9]{6}",
        placeholder_prefix="TICKET",
        trial=True,
        positive_examples=TICKET,
    )
    rule.full_clean()
    rule.save()  # the save moves the rules version: every process reloads
    return rule


def _say(client: anthropic.Anthropic, text: str) -> str:
    message = client.messages.create(
        model="fake-echo", max_tokens=100, messages=[{"role": "user", "content": text}]
    )
    return "".join(block.text for block in message.content if block.type == "text")


def test_a_rule_on_trial_counts_what_it_would_mask_and_masks_it_once_enforced(
    client: anthropic.Anthropic, upstream: FakeAnthropic, ticket_rule: Pattern
) -> None:
    assert _say(client, TEXT) == "You said: " + TEXT
    sent = upstream.raw_bodies()
    assert TICKET.encode() in sent  # on trial: not masked
    assert b"i-0a1b2c3d4e5f67890" not in sent  # the enforced rules still are
    [record] = wait_for_audit(1)
    assert record.trial_by_pattern == {"ticket_id": 1}
    assert "ticket_id" not in record.masked_by_pattern

    ticket_rule.trial = False
    ticket_rule.save()
    upstream.clear()
    assert _say(client, TEXT) == "You said: " + TEXT
    assert TICKET.encode() not in upstream.raw_bodies()
    latest = wait_for_audit(2)[-1]
    assert latest.trial_by_pattern == {}
    assert latest.masked_by_pattern.get("ticket_id") == 1


def test_the_dashboard_lists_rules_on_trial_with_what_they_would_have_masked(
    staff_client: Client,
) -> None:
    for counts in ({"ticket_id": 3}, {"ticket_id": 2, "order_ref": 1}, {}):
        AuditRecord.objects.create(
            key_prefix="master",
            key_name="master key",
            namespace="master",
            endpoint="messages",
            model="claude-sonnet-4-5",
            status=200,
            trial_by_pattern=counts,
        )
    page = staff_client.get(URL).content.decode()
    assert table_counts(page, "rules-on-trial", "data-pattern") == {"ticket_id": 5, "order_ref": 1}


def test_no_trial_section_without_rules_on_trial(staff_client: Client) -> None:
    assert 'id="rules-on-trial"' not in staff_client.get(URL).content.decode()
