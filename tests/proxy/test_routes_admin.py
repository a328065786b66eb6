"""Model routes in the admin and from the command line: validated, credentials named never
shown, fallbacks in order. (admin_client is pytest-django's: a logged-in superuser.)"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse

from proxy.models import ModelRoute, RouteFallback

pytestmark = pytest.mark.django_db

CREDENTIAL = "sk-route-credential-never-shown"


def route_form(**fields: Any) -> dict[str, Any]:
    form = {
        "model_pattern": "gpt-4o",
        "display_name": "",
        "enabled": "on",
        "order": "100",
        "litellm_model": "openai/gpt-4o",
        "api_base": "http://127.0.0.1:9/v1",
        "api_key_env": "ROUTES_ADMIN_KEY",
        "timeout_seconds": "",
        "connect_timeout_seconds": "",
        "fallback_links-TOTAL_FORMS": "0",
        "fallback_links-INITIAL_FORMS": "0",
    }
    return {**form, **fields}


def test_a_route_is_added_with_a_fallback_and_its_credential_shown_only_as_set(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTES_ADMIN_KEY", CREDENTIAL)
    spare = ModelRoute.objects.create(model_pattern="spare", litellm_model="anthropic/claude-x")
    response = admin_client.post(
        reverse("admin:proxy_modelroute_add"),
        route_form(
            **{
                "fallback_links-TOTAL_FORMS": "1",
                "fallback_links-0-position": "1",
                "fallback_links-0-fallback": str(spare.pk),
            }
        ),
        follow=True,
    )
    assert response.status_code == 200
    route = ModelRoute.objects.get(model_pattern="gpt-4o")
    assert [link.fallback for link in RouteFallback.objects.filter(route=route)] == [spare]
    listing = admin_client.get(reverse("admin:proxy_modelroute_changelist")).content.decode()
    assert "ROUTES_ADMIN_KEY: set" in listing
    assert "ANTHROPIC_API_KEY: " in listing  # the spare's default credential
    assert "Models no enabled route matches go to Anthropic" in listing
    change = admin_client.get(reverse("admin:proxy_modelroute_change", args=[route.pk]))
    assert CREDENTIAL not in change.content.decode() + listing
    assert CREDENTIAL not in str(list(ModelRoute.objects.values()))


def test_an_unset_credential_variable_is_flagged(admin_client: Client) -> None:
    ModelRoute.objects.create(
        model_pattern="gpt-4o", litellm_model="openai/gpt-4o", api_key_env="ROUTES_NEVER_SET"
    )
    ModelRoute.objects.create(
        model_pattern="gpt-5", litellm_model="openai/gpt-5", api_key_env="OPENAI_API_KEY"
    )
    listing = admin_client.get(reverse("admin:proxy_modelroute_changelist")).content.decode()
    assert "ROUTES_NEVER_SET: NOT SET" in listing
    assert "OPENAI_API_KEY: not in PROXY_ROUTE_CREDENTIALS" in listing


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"api_key_env": "SECRET_KEY"}, "proxy&#x27;s own secrets"),
        ({"api_key_env": "sk-live-123"}, "environment variable name"),
        ({"litellm_model": "gpt-4o"}, "provider/model"),
        ({"litellm_model": "nosuch/gpt-4o"}, "LiteLLM has no provider"),
        ({"model_pattern": "gpt 4o"}, "where * stands"),
        ({"timeout_seconds": "0"}, "greater than or equal to 1"),
    ],
)
def test_a_bad_route_is_refused_with_a_clear_message(
    admin_client: Client, fields: dict[str, str], message: str
) -> None:
    response = admin_client.post(reverse("admin:proxy_modelroute_add"), route_form(**fields))
    assert response.status_code == 200  # the form again, with its errors
    assert message in response.content.decode()
    assert not ModelRoute.objects.exists()


def test_a_route_cannot_fall_back_to_itself(admin_client: Client) -> None:
    route = ModelRoute.objects.create(model_pattern="gpt-4o", litellm_model="openai/gpt-4o")
    response = admin_client.post(
        reverse("admin:proxy_modelroute_change", args=[route.pk]),
        route_form(
            **{
                "fallback_links-TOTAL_FORMS": "1",
                "fallback_links-0-position": "0",
                "fallback_links-0-fallback": str(route.pk),
            }
        ),
    )
    assert "A route cannot fall back to itself." in response.content.decode()
    assert not RouteFallback.objects.exists()


def test_a_route_used_as_a_fallback_cannot_be_deleted_from_under_another(
    admin_client: Client,
) -> None:
    main = ModelRoute.objects.create(model_pattern="main", litellm_model="openai/a")
    spare = ModelRoute.objects.create(model_pattern="spare", litellm_model="openai/b")
    RouteFallback.objects.create(route=main, fallback=spare)
    page = admin_client.get(reverse("admin:proxy_modelroute_delete", args=[spare.pk]))
    assert "protected" in page.content.decode().lower()
    admin_client.post(reverse("admin:proxy_modelroute_delete", args=[spare.pk]), {"post": "yes"})
    assert ModelRoute.objects.filter(pk=spare.pk).exists()


@override_settings(PROXY_DEFAULT_ROUTE=False)
def test_the_listing_says_when_unrouted_models_are_refused(admin_client: Client) -> None:
    listing = admin_client.get(reverse("admin:proxy_modelroute_changelist")).content.decode()
    assert "PROXY_DEFAULT_ROUTE is off" in listing


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("model_route", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_routes_are_set_listed_and_deleted_from_the_command_line() -> None:
    run("set", "spare", "anthropic/claude-haiku-4-5")
    out, err = run(
        "set",
        "gpt-4o",
        "openai/gpt-4o",
        "--api-key-env",
        "ROUTES_NEVER_SET",
        "--api-base",
        "http://127.0.0.1:9/v1",
        "--timeout",
        "30",
        "--fallback",
        "spare",
    )
    assert out.startswith("Created route gpt-4o → openai/gpt-4o")
    assert "ROUTES_NEVER_SET is not set here" in err
    route = ModelRoute.objects.get(model_pattern="gpt-4o")
    assert (route.timeout_seconds, route.api_base) == (30.0, "http://127.0.0.1:9/v1")
    assert [link.fallback.model_pattern for link in route.fallback_links.all()] == ["spare"]
    out, _ = run("set", "gpt-4o", "openai/gpt-4o-mini", "--disabled")
    assert out.startswith("Updated route")
    route.refresh_from_db()
    assert (route.litellm_model, route.enabled, route.api_key_env) == (
        "openai/gpt-4o-mini",
        False,
        "",
    )
    assert not route.fallback_links.exists()  # set replaces every setting
    listing, _ = run("list")
    assert "gpt-4o -> openai/gpt-4o-mini  (disabled)" in listing
    assert "spare -> anthropic/claude-haiku-4-5" in listing
    run("delete", "gpt-4o")
    assert not ModelRoute.objects.filter(model_pattern="gpt-4o").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "gpt-4o", "openai/gpt-4o", "--api-key-env", "DATABASE_URL"), "own secrets"),
        (("set", "gpt-4o", "gpt-4o"), "provider/model"),
        (("set", "gpt-4o", "openai/gpt-4o", "--fallback", "nope"), "No route 'nope'"),
        (("delete", "nope"), "No route 'nope'"),
    ],
)
def test_the_command_refuses_what_the_admin_refuses(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not ModelRoute.objects.exists()


def test_a_fallback_cannot_be_deleted_while_a_route_uses_it() -> None:
    run("set", "spare", "anthropic/claude-haiku-4-5")
    run("set", "main", "anthropic/claude-sonnet-4-5", "--fallback", "spare")
    with pytest.raises(CommandError, match="spare is a fallback of main"):
        run("delete", "spare")
