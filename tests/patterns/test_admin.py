"""Admin for masking rules: validation messages, the test page, changes reaching other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse

from patterns.models import Pattern, SensitiveTerm

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def admin_client(db: None) -> Client:
    user = User.objects.create_superuser("admin", "admin@invalid", "pw")
    client = Client()
    client.force_login(user)
    return client


def _pattern_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "name": "custom_ticket",
        "category": "custom",
        "description": "Internal ticket IDs",
        "enabled": "on",
        "regex": r"TCK-[0-9]{6}",
        "validator": "",
        "priority": "100",
        "placeholder_prefix": "TICKET",
        "context_keywords": "",
        "context_regex": "",
        "context_window": "48",
        "positive_examples": "TCK-123456\nsee TCK-654321 now",
        "negative_examples": "TCK-12345",
    }
    form.update(overrides)
    return form


def _add(client: Client, **overrides: Any) -> Any:
    return client.post(reverse("admin:patterns_pattern_add"), _pattern_form(**overrides))


def test_valid_pattern_is_saved(admin_client: Client) -> None:
    response = _add(admin_client)
    assert response.status_code == 302
    saved = Pattern.objects.get(name="custom_ticket")
    assert saved.placeholder_prefix == "TICKET"
    assert saved.to_spec().regex == r"TCK-[0-9]{6}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"regex": r"(?<=x)TCK"}, "Lookarounds are not supported"),
        ({"regex": r"(T)\1"}, "Backreferences are not supported"),
        ({"regex": r"T*"}, "can match the empty string"),
        ({"regex": r"TCK-[0-9"}, "cannot compile"),
        ({"placeholder_prefix": "ticket"}, "placeholder prefix must be upper-case"),
        ({"context_regex": r"(?=x)"}, "Lookarounds are not supported"),
        ({"positive_examples": "TCK-12"}, "Positive example not matched"),
        ({"negative_examples": "TCK-000001"}, "Negative example matched"),
    ],
)
def test_bad_pattern_is_refused_with_a_clear_message(
    admin_client: Client, overrides: dict[str, str], message: str
) -> None:
    response = _add(admin_client, **overrides)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Pattern.objects.filter(name="custom_ticket").exists()


def test_default_library_is_seeded_and_listed(admin_client: Client) -> None:
    assert Pattern.objects.filter(enabled=True).count() >= 30
    response = admin_client.get(reverse("admin:patterns_pattern_changelist"))
    assert response.status_code == 200
    assert "Try the rules" in response.content.decode()


def test_test_page_shows_matches_and_masked_text(admin_client: Client) -> None:
    SensitiveTerm.objects.create(term="project-falcon", placeholder_prefix="CODE_NAME")
    url = reverse("admin:patterns_pattern_test")
    assert admin_client.get(url).status_code == 200
    text = "Restart i-0123456789abcdef0에서 for Project-Falcon, vpc-12345678 too"
    response = admin_client.post(url, {"text": text})
    body = response.content.decode()
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert "Restart AWS_EC2_001에서 for CODE_NAME_001, AWS_VPC_001 too" in body
    assert "<code>i-0123456789abcdef0</code>" in body
    assert "sensitive_term" in body


def test_test_page_shows_composite_parts_and_rules_on_trial(admin_client: Client) -> None:
    Pattern.objects.create(
        name="ticket_id", regex=r"TCK-[0-9]{6}", placeholder_prefix="TICKET", trial=True
    )
    text = "TCK-123456: arn:aws:iam::123456789012:role/deploy cannot read it"
    body = admin_client.post(reverse("admin:patterns_pattern_test"), {"text": text}).content
    page = body.decode()
    masked = "TCK-123456: arn:aws:iam::AWS_ACCOUNT_001:role/AWS_IAM_ROLE_001 cannot read it"
    assert masked in page
    assert "<code>AWS_IAM_ROLE_001</code>" in page and "<code>deploy</code>" in page
    trial = page[page.index('id="test-trial"') :]
    assert "<td>ticket_id</td>" in trial and "<code>TCK-123456</code>" in trial


def test_test_page_needs_staff(db: None) -> None:
    response = Client().get(reverse("admin:patterns_pattern_test"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_sensitive_term_never_appears_in_its_own_label(admin_client: Client) -> None:
    term = SensitiveTerm.objects.create(term="secret-bucket-name", placeholder_prefix="BUCKET")
    assert "secret-bucket-name" not in str(term)


# Another process, asking for its rules as a request does (arules_snapshot keeps them until
# the version in Redis moves).
CHILD = """
import sys, django
django.setup()
from asgiref.sync import async_to_sync
from patterns.services import arules_snapshot
from patterns.store import build_async_store

async def names():
    store = build_async_store()
    try:
        return sorted(c.spec.name for c in (await arules_snapshot(store.control)).patterns)
    finally:
        await store.aclose()

for line in sys.stdin:
    print(json.dumps(async_to_sync(names)()), flush=True)
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings")
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{settings_dict['NAME']}"
    else:
        host = f"{settings_dict['HOST'] or 'localhost'}:{settings_dict['PORT'] or 5432}"
        credentials = f"{settings_dict['USER']}:{settings_dict['PASSWORD']}"
        env["DATABASE_URL"] = f"postgres://{credentials}@{host}/{settings_dict['NAME']}"
    return env


def test_a_change_in_admin_reaches_another_running_process(seeded_rules: None) -> None:
    user = User.objects.create_superuser("admin", "admin@invalid", "pw")
    client = Client()
    client.force_login(user)
    with subprocess.Popen(
        [sys.executable, "-c", "import json\n" + CHILD],
        cwd=ROOT,
        env=_child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("names\n")
        child.stdin.flush()
        before = json.loads(child.stdout.readline())
        assert "custom_ticket" not in before
        assert _add(client).status_code == 302
        child.stdin.write("names\n")
        child.stdin.flush()
        after = json.loads(child.stdout.readline())
        child.stdin.close()
        assert set(after) == {*before, "custom_ticket"}
