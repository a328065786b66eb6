"""API keys in the admin and from the command line: shown once, stored as a hash."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse

from proxy.auth import KeyPrincipal, authenticate_request_key
from proxy.keys import key_digest, key_prefix
from proxy.models import ApiKey
from proxy.stores import close_store

pytestmark = pytest.mark.django_db


@async_to_sync
async def principal_for(key: str) -> KeyPrincipal:
    """The principal a request presenting key gets, as ApiKeyAuthentication asks for it
    (async_to_sync runs the database read on this thread, inside the test's transaction)."""
    try:
        principal, _ = await authenticate_request_key(key)
    finally:
        await close_store()  # the loop's store: async_to_sync's loop ends with this call
    return principal


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@invalid", "pw"))
    return client


def test_creating_a_key_in_admin_shows_it_once_and_stores_a_hash(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:proxy_apikey_add"),
        {"name": "ci", "namespace": "team-a", "enabled": "on"},
        follow=True,
    )
    page = response.content.decode()
    api_key = ApiKey.objects.get(name="ci")
    shown = page.split("The new key is ")[1].split(" ")[0]
    assert key_prefix(shown) == api_key.prefix
    assert api_key.key_hash == key_digest(shown)
    assert shown not in str(ApiKey.objects.values().get())  # the row holds no key
    change_page = admin_client.get(reverse("admin:proxy_apikey_change", args=[api_key.pk]))
    assert api_key.key_hash not in change_page.content.decode()
    assert shown not in change_page.content.decode()
    assert principal_for(shown).namespace == "team-a"


def test_revoking_is_one_action_and_leaves_the_key_read_only(admin_client: Client) -> None:
    out = io.StringIO()
    call_command("create_api_key", "doomed", stdout=out)
    api_key = ApiKey.objects.get(name="doomed")
    admin_client.post(
        reverse("admin:proxy_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [api_key.pk]},
    )
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and not api_key.enabled
    change = admin_client.get(reverse("admin:proxy_apikey_change", args=[api_key.pk]))
    assert 'name="name"' not in change.content.decode()  # no editable form


def test_hash_is_neither_listed_nor_filterable(admin_client: Client) -> None:
    call_command("create_api_key", "listed", stdout=io.StringIO())
    api_key = ApiKey.objects.get()
    page = admin_client.get(reverse("admin:proxy_apikey_changelist")).content.decode()
    assert api_key.key_hash not in page
    filtered = admin_client.get(
        reverse("admin:proxy_apikey_changelist"), {"key_hash": api_key.key_hash}
    )
    assert filtered.status_code == 400  # Django's DisallowedModelAdminLookup


def test_command_prints_the_key_as_its_last_line() -> None:
    out = io.StringIO()
    call_command("create_api_key", "script", "--namespace", "shared", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    principal = principal_for(key)
    assert (principal.name, principal.namespace) == ("script", "shared")


def test_command_refuses_a_bad_namespace() -> None:
    with pytest.raises(CommandError, match="namespace"):
        call_command("create_api_key", "bad", "--namespace", "no spaces", stdout=io.StringIO())
    assert not ApiKey.objects.exists()


def test_keys_get_their_own_namespace_by_default() -> None:
    out = io.StringIO()
    call_command("create_api_key", "alone", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    assert principal_for(key).namespace == f"key-{key_prefix(key)}"


def test_authentication_is_one_indexed_query(
    django_assert_num_queries: Callable[[int], AbstractContextManager[None]],
) -> None:
    out = io.StringIO()
    call_command("create_api_key", "fast", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    principal_for(key)  # the first use records last_used_at
    with override_settings(API_KEY_CACHE_SECONDS=0), django_assert_num_queries(1):
        principal_for(key)  # not from the processes' key cache: from the database
    with django_assert_num_queries(0):
        principal_for(key)  # cached by the first use


def test_every_admin_page_names_the_product(admin_client: Client) -> None:
    for url in (reverse("admin:index"), reverse("admin:proxy_apikey_changelist")):
        page = admin_client.get(url).content.decode()
        assert "Masking proxy administration" in page
        assert "Django administration" not in page
