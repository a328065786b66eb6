"""Model routes from the database, through the live proxy, to the fake Anthropic upstream.

Each test writes its routes with the ORM (as admin does); the routes version moves on commit
and the running proxy picks the new table up on its next request, without a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest
from django.test import override_settings

from patterns.store import MappingStore
from proxy.models import ModelRoute, RouteFallback
from proxy.routes import routes_changed
from proxy.targets import NO_CREDENTIAL
from tests.support.constants import UPSTREAM_KEY
from tests.support.fakes.anthropic_upstream import ECHO_PREFIX, MODEL_IDS, FakeAnthropic
from tests.support.live import IssuedKey, assert_error, wait_for_audit

SECRET = "i-0a1b2c3d4e5f60718"
MakeRoute = Callable[..., ModelRoute]


@pytest.fixture
def make_route(transactional_db: None, upstream: FakeAnthropic) -> Iterator[MakeRoute]:
    """Create routes to the fake by default; every process forgets them after the test."""

    def make(model_pattern: str, litellm_model: str, **fields: Any) -> ModelRoute:
        fields.setdefault("api_base", upstream.base_url)
        route = ModelRoute(model_pattern=model_pattern, litellm_model=litellm_model, **fields)
        route.full_clean()
        route.save()
        return route

    yield make
    # The database is flushed after the test without signals: move the version ourselves.
    routes_changed()


def ask(client: anthropic.Anthropic, model: str, text: str = f"Check {SECRET} now") -> str:
    message = client.messages.create(
        model=model, max_tokens=50, messages=[{"role": "user", "content": text}]
    )
    block = message.content[0]
    assert block.type == "text"
    return block.text


def sent_models(upstream: FakeAnthropic) -> list[str]:
    return [str((request.json or {}).get("model")) for request in upstream.requests]


def test_an_alias_sends_the_routes_model_and_restores_the_answer(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    make_route("fast", "anthropic/fake-echo", api_key_env="ROUTES_TEST_KEY")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ROUTES_TEST_KEY", "sk-ant-route-key")
        assert ask(client, "fast") == f"{ECHO_PREFIX}Check {SECRET} now"
    [request] = upstream.requests
    assert request.json is not None and request.json["model"] == "fake-echo"
    assert request.headers["x-api-key"] == "sk-ant-route-key"
    assert SECRET.encode() not in upstream.raw_bodies()
    [record] = wait_for_audit(1)
    assert (record.model, record.upstream_model) == ("fast", "anthropic/fake-echo")


def test_a_streamed_answer_through_an_alias_is_restored(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    make_route("fast", "anthropic/fake-echo")
    with client.messages.stream(
        model="fast", max_tokens=50, messages=[{"role": "user", "content": f"See {SECRET}"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == f"{ECHO_PREFIX}See {SECRET}"
    assert sent_models(upstream) == ["fake-echo"]
    assert SECRET.encode() not in upstream.raw_bodies()


def test_the_default_route_keeps_serving_what_no_route_matches(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    make_route("fast", "anthropic/fake-tool")
    assert ask(client, "fake-echo").startswith(ECHO_PREFIX)
    assert upstream.requests[0].headers["x-api-key"] == UPSTREAM_KEY


def test_without_the_default_route_an_unrouted_model_is_a_404_and_nothing_is_sent(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    make_route("fast", "anthropic/fake-echo")
    body = {
        "model": "fake-echo",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": SECRET}],
    }
    with override_settings(PROXY_DEFAULT_ROUTE=False):
        routes_changed()  # the table holds the switch: reload it
        response = httpx.post(
            f"{proxy_url}/v1/messages", json=body, headers={"x-api-key": api_key.key}, timeout=30
        )
        assert_error(response, 404, "not_found_error")
        [record] = wait_for_audit(1)
        assert (record.status, record.masked_total) == (404, 0)
        routes_changed()
    assert upstream.requests == []


def test_a_pattern_route_passes_the_requested_name_on(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    make_route("team-*", "anthropic/fake-{model}")
    assert ask(client, "team-echo").startswith(ECHO_PREFIX)
    assert sent_models(upstream) == ["fake-team-echo"]


@pytest.mark.parametrize("failure", ["closed", "fake-error-529", "fake-error-429", "missing-key"])
def test_a_failing_route_falls_back_to_the_next_one(
    client: anthropic.Anthropic,
    upstream: FakeAnthropic,
    make_route: MakeRoute,
    closed_port: int,
    failure: str,
) -> None:
    primary = {
        "closed": {
            "litellm_model": "anthropic/fake-echo",
            "api_base": f"http://127.0.0.1:{closed_port}",
        },
        "fake-error-529": {"litellm_model": "anthropic/fake-error-529"},
        "fake-error-429": {"litellm_model": "anthropic/fake-error-429"},
        "missing-key": {"litellm_model": "anthropic/fake-echo", "api_key_env": "ROUTES_UNSET_KEY"},
    }[failure]
    main = make_route("main", **primary)
    spare = make_route("spare", "anthropic/fake-echo")
    RouteFallback.objects.create(route=main, fallback=spare)
    assert ask(client, "main") == f"{ECHO_PREFIX}Check {SECRET} now"
    expected = {"closed": [], "missing-key": []}.get(failure, [failure])
    assert sent_models(upstream) == [*expected, "fake-echo"]
    assert SECRET.encode() not in upstream.raw_bodies()
    [record] = wait_for_audit(1)
    assert (record.status, record.upstream_model) == (200, "anthropic/fake-echo")


def test_a_request_the_provider_refuses_is_not_sent_to_the_fallback(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    main = make_route("main", "anthropic/fake-error-400")
    RouteFallback.objects.create(route=main, fallback=make_route("spare", "anthropic/fake-echo"))
    with pytest.raises(anthropic.BadRequestError):
        ask(client, "main")
    assert sent_models(upstream) == ["fake-error-400"]


def test_when_every_route_fails_the_last_error_is_returned(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    main = make_route("main", "anthropic/fake-error-529")
    RouteFallback.objects.create(
        route=main, fallback=make_route("spare", "anthropic/fake-error-500")
    )
    with pytest.raises(anthropic.InternalServerError) as raised:
        ask(client, "main")
    assert raised.value.status_code == 500
    assert sent_models(upstream) == ["fake-error-529", "fake-error-500"]
    [record] = wait_for_audit(1)
    assert (record.status, record.upstream_model) == (500, "anthropic/fake-error-500")


def test_a_route_without_its_credential_and_no_fallback_is_a_clear_500(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    make_route("main", "anthropic/fake-echo", api_key_env="ROUTES_UNSET_KEY")
    with pytest.raises(anthropic.InternalServerError) as raised:
        ask(client, "main")
    assert "not configured" in str(raised.value)
    assert "ROUTES_UNSET_KEY" not in str(raised.value)  # the client learns no server detail
    assert upstream.requests == []


def test_a_streamed_request_falls_back_before_its_first_byte(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    main = make_route("main", "anthropic/fake-error-529")
    RouteFallback.objects.create(route=main, fallback=make_route("spare", "anthropic/fake-echo"))
    with client.messages.stream(
        model="main", max_tokens=50, messages=[{"role": "user", "content": f"See {SECRET}"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == f"{ECHO_PREFIX}See {SECRET}"
    assert sent_models(upstream) == ["fake-error-529", "fake-echo"]


def test_disabling_a_route_takes_effect_on_the_next_request(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    route = make_route("fake-echo", "anthropic/fake-tool")
    ask_tool = client.messages.create(
        model="fake-echo", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert ask_tool.stop_reason == "tool_use"
    route.enabled = False
    route.save()
    assert ask(client, "fake-echo").startswith(ECHO_PREFIX)
    assert sent_models(upstream) == ["fake-tool", "fake-echo"]


def test_count_tokens_goes_to_the_routes_model(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    make_route("fast", "anthropic/fake-echo")
    counted = client.messages.count_tokens(
        model="fast", messages=[{"role": "user", "content": f"Count {SECRET}"}]
    )
    assert counted.input_tokens > 0
    [request] = upstream.requests
    assert request.path == "/v1/messages/count_tokens"
    assert request.json is not None and request.json["model"] == "fake-echo"
    assert SECRET.encode() not in upstream.raw_bodies()


def listed(client: anthropic.Anthropic, **params: Any) -> list[str]:
    return [model.id for model in client.models.list(**params)]


def test_the_model_list_shows_the_routes_then_what_the_default_route_reaches(
    client: anthropic.Anthropic, upstream: FakeAnthropic, make_route: MakeRoute
) -> None:
    make_route("fast", "anthropic/fake-echo", display_name="Fast and cheap")
    make_route("gpt-*", "openai/{model}")  # a pattern: nothing to list by name
    # The SDK follows has_more / last_id through pages of two.
    assert listed(client, limit=2) == ["fast", *MODEL_IDS]
    # The provider is asked once; the pages after the first come from the process's copy.
    assert [r.path for r in upstream.requests] == ["/v1/models"]
    assert upstream.requests[0].headers["x-api-key"] == UPSTREAM_KEY
    fast = client.models.retrieve("fast")
    assert (fast.display_name, fast.type) == ("Fast and cheap", "model")
    assert client.models.retrieve("fake-tool").id == "fake-tool"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_without_the_default_route_only_routed_models_are_listed(
    client: anthropic.Anthropic, make_route: MakeRoute
) -> None:
    make_route("fast", "anthropic/fake-echo")
    make_route("claude-*", "anthropic/{model}")
    with override_settings(PROXY_DEFAULT_ROUTE=False):
        routes_changed()
        assert listed(client) == ["fast", "claude-fake-opus-9", "claude-fake-sonnet-9"]
        routes_changed()


def test_the_routes_are_still_listed_when_the_provider_does_not_answer(
    client: anthropic.Anthropic, make_route: MakeRoute, closed_port: int
) -> None:
    make_route("fast", "anthropic/fake-echo")
    with override_settings(PROXY_UPSTREAM_BASE_URL=f"http://127.0.0.1:{closed_port}"):
        assert listed(client) == ["fast"]


def test_the_model_list_needs_a_key(proxy_url: str, upstream: FakeAnthropic) -> None:
    response = httpx.get(f"{proxy_url}/v1/models", timeout=30)
    assert_error(response, 401, "authentication_error")
    assert upstream.requests == []


def test_a_route_to_another_address_never_gets_the_anthropic_key(
    client: anthropic.Anthropic,
    upstream: FakeAnthropic,
    make_route: MakeRoute,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same fake under another name: to the proxy, some other Anthropic-compatible host.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-environment")
    make_route("elsewhere", "anthropic/fake-echo", api_base=f"http://localhost:{upstream.port}")
    assert ask(client, "elsewhere").startswith(ECHO_PREFIX)
    [request] = upstream.requests
    assert request.headers["x-api-key"] == NO_CREDENTIAL


def test_saving_a_route_moves_the_routes_version_every_process_reads(
    make_route: MakeRoute, store: MappingStore
) -> None:
    before = store.control.routes_version()
    route = make_route("fast", "anthropic/fake-echo")
    after_create = store.control.routes_version()
    route.enabled = False
    route.save()
    after_edit = store.control.routes_version()
    route.delete()
    assert len({before, after_create, after_edit, store.control.routes_version()}) == 4


@pytest.mark.parametrize(
    "model", ["claude-x\n", "claude-\x00x", "c" * 257, "x/../../v1/files", "claude x", "c?a=b"]
)
def test_a_model_name_that_is_no_name_is_refused_before_routing(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, model: str
) -> None:
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        f"{proxy_url}/v1/messages", json=body, headers={"x-api-key": api_key.key}, timeout=30
    )
    assert_error(response, 400, "invalid_request_error")
    assert "model: at most 256 letters, digits and" in response.text
    assert upstream.requests == []
