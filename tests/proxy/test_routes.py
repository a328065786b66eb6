"""Model routes as pure data: validation, matching, targets, fallbacks and the model list."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from proxy.catalog import model_page, route_entry
from proxy.errors import InvalidRequest, ModelNotRouted
from proxy.route_checks import PROXY_OWN_VARIABLES, route_errors
from proxy.routes import TABLE_MAX_AGE_SECONDS, Route, build_table, glob_match

SETTINGS = Path(__file__).resolve().parents[2] / "config" / "settings.py"


def errors(**fields: str) -> dict[str, str]:
    values = {"model_pattern": "claude-*", "litellm_model": "anthropic/{model}", "api_key_env": ""}
    return route_errors(**{**values, **fields})


def test_a_well_formed_route_has_no_errors() -> None:
    assert errors() == {}
    assert errors(model_pattern="gpt-4o", litellm_model="openai/gpt-4o-mini") == {}
    assert errors(api_key_env="ROUTES_TEST_KEY") == {}  # listed in PROXY_ROUTE_CREDENTIALS


def test_a_route_reads_only_the_variables_the_operator_lists() -> None:
    error = errors(api_key_env="AWS_SECRET_ACCESS_KEY")["api_key_env"]
    assert "PROXY_ROUTE_CREDENTIALS" in error and "AWS_SECRET_ACCESS_KEY is not one" in error
    with override_settings(PROXY_ROUTE_CREDENTIALS=["OPENAI_API_KEY"]):
        assert errors(api_key_env="OPENAI_API_KEY") == {}
        # Listing one of the proxy's own secrets does not make it a provider key.
        with override_settings(PROXY_ROUTE_CREDENTIALS=["SECRET_KEY"]):
            assert "own secrets" in errors(api_key_env="SECRET_KEY")["api_key_env"]


@pytest.mark.parametrize(
    "api_base",
    [
        "ftp://llm.example/v1",
        "http:///v1",
        "http://user:pw@llm.example/v1",
        "http://llm.example/v1?key=x",
        "http://llm.example:port/v1",
        "llm.example/v1",
    ],
)
def test_an_api_base_is_an_http_url_without_credentials(api_base: str) -> None:
    assert "api_base" in errors(api_base=api_base)


@pytest.mark.parametrize(
    "api_base", ["http://ollama:11434/v1", "https://api.openai.com/v1", "http://10.0.0.5:8000"]
)
def test_an_api_base_may_be_a_bare_service_name(api_base: str) -> None:
    assert errors(api_base=api_base) == {}


@pytest.mark.parametrize("pattern", ["", " claude", "claude 3", "a" * 201, "claude?", "x{y}"])
def test_a_pattern_must_be_a_model_name_with_stars(pattern: str) -> None:
    assert "model_pattern" in errors(model_pattern=pattern)


@pytest.mark.parametrize(
    ("litellm_model", "why"),
    [
        ("gpt-4o", "provider/model"),
        ("nosuchprovider/gpt-4o", "no provider called 'nosuchprovider'"),
        ("openai/{name}", "only placeholder"),
        ("openai/gpt 4o", "provider/model"),
    ],
)
def test_the_litellm_model_names_a_provider_litellm_knows(litellm_model: str, why: str) -> None:
    assert why in errors(litellm_model=litellm_model)["litellm_model"]


@pytest.mark.parametrize("name", ["openai_api_key", "OPENAI-KEY", "1KEY", "A" * 101])
def test_the_credential_is_named_by_an_environment_variable(name: str) -> None:
    assert "environment variable name" in errors(api_key_env=name)["api_key_env"]


@pytest.mark.parametrize("name", [*sorted(PROXY_OWN_VARIABLES), "SECRET_KEY_FILE"])
def test_a_route_cannot_send_one_of_the_proxys_own_secrets(name: str) -> None:
    assert "proxy's own secrets" in errors(api_key_env=name)["api_key_env"]


def test_every_secret_the_settings_read_is_protected_but_the_provider_key() -> None:
    # A secret's former name (formerly=) is read too, so it is protected as well.
    calls = re.findall(
        r'env_secret\("([A-Z_]+)"(?:, formerly="([A-Z_]+)")?\)', SETTINGS.read_text()
    )
    read = {name for call in calls for name in call if name}
    assert {"PROXY_MASTER_KEY", "LITELLM_MASTER_KEY"} <= read
    assert read - PROXY_OWN_VARIABLES == {"ANTHROPIC_API_KEY"}
    assert "DATABASE_URL" in PROXY_OWN_VARIABLES


def route(id: int, pattern: str, litellm_model: str, **fields: Any) -> Route:
    return Route(id=id, pattern=pattern, litellm_model=litellm_model, **fields)


def test_stars_stand_for_any_characters_and_the_rest_for_itself() -> None:
    claude = route(1, "claude-*", "anthropic/{model}")
    assert claude.matches("claude-sonnet-4-5")
    assert claude.matches("claude-")
    assert not claude.matches("xclaude-sonnet")
    dotted = route(2, "gpt-4.1", "openai/gpt-4.1")
    assert dotted.matches("gpt-4.1") and not dotted.matches("gpt-441")
    assert not dotted.matches("gpt-4.1-mini")


@override_settings(
    PROXY_UPSTREAM_BASE_URL="https://anthropic.example/",
    ANTHROPIC_API_KEY="sk-ant-default",
    PROXY_UPSTREAM_TIMEOUT=600.0,
    PROXY_UPSTREAM_CONNECT_TIMEOUT=5.0,
)
def test_the_first_matching_route_serves_and_the_default_route_takes_the_rest() -> None:
    table = build_table(
        "v1",
        [
            route(1, "fast", "anthropic/claude-haiku-4-5", display_name="Fast"),
            route(2, "gpt-*", "openai/{model}", api_base="http://llm.example/v1", timeout=30.0),
        ],
        default_route=True,
    )
    [fast] = table.targets("fast")
    assert (fast.model, fast.api_base, fast.api_key) == (
        "anthropic/claude-haiku-4-5",
        "https://anthropic.example",
        "sk-ant-default",
    )
    [gpt] = table.targets("gpt-4o")
    assert (gpt.model, gpt.api_base, gpt.timeout, gpt.connect_timeout) == (
        "openai/gpt-4o",
        "http://llm.example/v1",
        30.0,
        5.0,
    )
    assert gpt.api_key == ""  # LiteLLM's own default (OPENAI_API_KEY) applies
    [other] = table.targets("claude-opus-4-1")
    assert (other.model, other.route) == ("anthropic/claude-opus-4-1", "*")


def test_without_the_default_route_an_unrouted_model_is_not_found() -> None:
    table = build_table("v1", [route(1, "fast", "anthropic/x")], default_route=False)
    with pytest.raises(ModelNotRouted) as raised:
        table.targets("claude-opus-4-1")
    assert (raised.value.status, raised.value.error_type) == (404, "not_found_error")


def test_fallbacks_follow_the_route_in_order_and_skip_disabled_ones() -> None:
    table = build_table(
        "v1",
        [
            route(1, "main", "openai/primary", fallback_ids=(3, 9, 2)),
            route(2, "second", "openai/second"),
            route(3, "third", "openai/third-{model}"),
        ],
        default_route=False,
    )
    # 9 is disabled (not in the table); {model} in a fallback is the name the client sent.
    assert [t.model for t in table.targets("main")] == [
        "openai/primary",
        "openai/third-main",
        "openai/second",
    ]


def test_a_credential_variable_is_read_when_the_request_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    table = build_table(
        "v1", [route(1, "gpt", "openai/gpt", api_key_env="ROUTE_TEST_KEY")], default_route=False
    )
    monkeypatch.delenv("ROUTE_TEST_KEY", raising=False)
    [unset] = table.targets("gpt")
    assert (unset.api_key, unset.missing_credential) == ("", "ROUTE_TEST_KEY")
    monkeypatch.setenv("ROUTE_TEST_KEY", "sk-first")
    assert table.targets("gpt")[0].api_key == "sk-first"
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    monkeypatch.delenv("ROUTE_TEST_KEY")
    monkeypatch.setenv("ROUTE_TEST_KEY_FILE", str(key_file))
    assert table.targets("gpt")[0].api_key == "sk-from-file"


def entries(*names: str) -> list[dict[str, Any]]:
    return [{"type": "model", "id": name} for name in names]


def test_model_pages_follow_anthropics_cursor_parameters() -> None:
    models = entries("a", "b", "c", "d", "e")
    first = model_page(models, {"limit": "2"})
    assert ([m["id"] for m in first["data"]], first["has_more"]) == (["a", "b"], True)
    assert (first["first_id"], first["last_id"]) == ("a", "b")
    second = model_page(models, {"limit": "2", "after_id": "b"})
    assert [m["id"] for m in second["data"]] == ["c", "d"]
    last = model_page(models, {"limit": "2", "after_id": "d"})
    assert ([m["id"] for m in last["data"]], last["has_more"]) == (["e"], False)
    before = model_page(models, {"limit": "2", "before_id": "d"})
    assert ([m["id"] for m in before["data"]], before["has_more"]) == (["b", "c"], True)
    assert model_page(models, {})["has_more"] is False
    empty = model_page([], {})
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "x"},
        {"after_id": "zz"},
        {"after_id": "a", "before_id": "b"},
    ],
)
def test_bad_model_list_parameters_are_invalid_requests(params: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest):
        model_page(entries("a", "b"), params)


def test_a_route_is_listed_with_its_display_name_and_creation_date() -> None:
    created = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    entry = route_entry(route(1, "fast", "anthropic/x", display_name="Fast", created_at=created))
    assert entry == {
        "type": "model",
        "id": "fast",
        "display_name": "Fast",
        "created_at": "2026-11-01T12:30:00Z",
    }


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("claude-*", "claude-x\n", True),  # a star stands for newlines too: no way around it
        ("*", "", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "a-c-b", False),
        ("a*a", "a", False),
        ("gpt-*-*-mini", "gpt-" + "-" * 50_000, False),  # linear, however long the name
        ("gpt-*-*-mini", "gpt-4-o-mini", True),
    ],
)
def test_glob_matching(pattern: str, name: str, matches: bool) -> None:
    assert glob_match(pattern, name) is matches


@override_settings(
    PROXY_UPSTREAM_BASE_URL="https://anthropic.example", ANTHROPIC_API_KEY="sk-ant-default"
)
def test_the_anthropic_key_goes_only_to_the_configured_anthropic_url() -> None:
    table = build_table(
        "v1",
        [
            route(1, "same", "anthropic/x", api_base="https://anthropic.example/"),
            route(2, "other", "anthropic/x", api_base="https://compatible.example"),
        ],
        default_route=False,
    )
    assert table.targets("same")[0].api_key == "sk-ant-default"
    [other] = table.targets("other")
    assert (other.api_key, other.missing_credential) == ("", "")  # sent as NO_CREDENTIAL


def test_a_variable_no_longer_listed_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTE_TEST_KEY", "sk-listed-once")
    table = build_table(
        "v1", [route(1, "gpt", "openai/gpt", api_key_env="ROUTE_TEST_KEY")], default_route=False
    )
    with override_settings(PROXY_ROUTE_CREDENTIALS=[]):
        [target] = table.targets("gpt")
    assert (target.api_key, target.missing_credential) == ("", "ROUTE_TEST_KEY")


def test_a_table_is_reloaded_after_its_maximum_age_even_without_a_new_version() -> None:
    table = build_table("v1", [], default_route=True)
    assert table.current("v1") and not table.current("v2")
    aged = replace(table, loaded_at=table.loaded_at - TABLE_MAX_AGE_SECONDS)
    assert not aged.current("v1")
