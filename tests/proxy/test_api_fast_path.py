"""API requests go around Django's synchronous middleware (proxy.middleware.ApiFastPath) and
get the answers the whole chain gives; the admin keeps the chain.

Each comparison sends the same request to the live proxy and to a proxy process whose
settings leave ApiFastPath out (tests/full_chain_settings.py), in front of the same fake
upstream and Redis. The in-process tests run Django's ASGI handler built both ways.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.test import AsyncRequestFactory, override_settings
from django.urls import URLPattern, URLResolver, path
from django.views.decorators.csrf import csrf_exempt

from config import urls
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey
from tests.support.sites import prepare_site, running_proxies

FAST_PATH = "proxy.middleware.ApiFastPath"
VALID = {"model": "fake-echo", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
# Headers whose values differ from one response to the next (Content-Length: with the body).
PER_RESPONSE = frozenset({"date", "request-id", "content-length"})
MIDDLEWARE_HOOKS = frozenset({"process_request", "process_view", "process_response"})


async def failing_view(request: HttpRequest) -> HttpResponseBase:
    raise RuntimeError("a bug in a view")


# The project's routes and one whose view fails (with ROOT_URLCONF=__name__).
urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/failing", csrf_exempt(failing_view)),
    *urls.urlpatterns,
]
handler404, handler500 = urls.handler404, urls.handler500


@dataclass(frozen=True)
class FullChain:
    url: str
    key: str


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: dict[str, Any] | None = None
    with_key: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)


CASES = {
    "a JSON reply": Case("POST", "/v1/messages", VALID),
    "a streamed reply": Case("POST", "/v1/messages", {**VALID, "stream": True}),
    "a 401 without a key": Case("POST", "/v1/messages", VALID, with_key=False),
    "a token count": Case("POST", "/v1/messages/count_tokens", VALID),
    "the model list": Case("GET", "/v1/models"),
    "a model the list lacks": Case("GET", "/v1/models/no-such-model"),
    "health": Case("GET", "/health", with_key=False),
    "metrics": Case("GET", "/metrics", with_key=False),
    "an unknown API path": Case("GET", "/v1/no-such-endpoint"),
    "a trailing slash": Case("GET", "/health/", with_key=False),
    "a Host not allowed": Case("GET", "/v1/models", headers={"Host": "evil.example"}),
}


@pytest.fixture(scope="module")
def full_chain(
    site_directory: Path,
    fake_anthropic: FakeAnthropic,
    redis_client: redis.Redis,
) -> Iterator[FullChain]:
    # Under the run's own prefix: the shared Redis is never flushed, only these keys go.
    prefix = f"{settings.CACHES['default']['KEY_PREFIX']}:full-chain-{uuid.uuid4().hex[:8]}"
    site = prepare_site(
        site_directory,
        redis_url=str(settings.CACHES["default"]["LOCATION"]),
        redis_key_prefix=prefix,
        upstream_url=fake_anthropic.base_url,
        DJANGO_SETTINGS_MODULE="tests.full_chain_settings",
    )
    key = site.create_api_key("full-chain", "ns-full-chain")
    try:
        with running_proxies(site) as (proxy,):
            yield FullChain(proxy.url, key)
    finally:
        for name in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
            redis_client.delete(name)


def send(base_url: str, key: str, case: Case, **headers: str) -> httpx.Response:
    sent = {**case.headers, **headers}
    if case.with_key:
        sent["x-api-key"] = key
    return httpx.request(
        case.method, f"{base_url}{case.path}", json=case.body, headers=sent, timeout=30
    )


def comparable_body(response: httpx.Response) -> Any:
    """An error's body without its request id; a stream's sequence of events."""
    if response.headers["content-type"] == "text/event-stream":
        return [line for line in response.text.splitlines() if line.startswith("event:")]
    if response.headers["content-type"] == "application/json":
        return {k: v for k, v in response.json().items() if k != "request_id"}
    return response.text


def steady_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name.lower(): value for name, value in headers.items() if name.lower() not in PER_RESPONSE
    }


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_api_responses_are_the_full_chains(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, full_chain: FullChain, case: Case
) -> None:
    fast = send(proxy_url, api_key.key, case)
    chain = send(full_chain.url, full_chain.key, case)
    assert fast.status_code == chain.status_code, fast.text
    assert sorted(fast.headers.keys()) == sorted(chain.headers.keys())
    assert steady_headers(fast.headers) == steady_headers(chain.headers)
    if "content-length" in chain.headers:
        assert int(fast.headers["content-length"]) == len(fast.content)
    if fast.status_code >= 400 or "stream" in (case.body or {}):
        assert comparable_body(fast) == comparable_body(chain)


@pytest.mark.slow
@pytest.mark.redis
def test_the_csrf_middleware_never_sees_an_api_request(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, full_chain: FullChain
) -> None:
    # The CSRF middleware answers a malformed csrftoken cookie with a new one.
    models, malformed = CASES["the model list"], {"Cookie": "csrftoken=malformed"}
    chain = send(full_chain.url, full_chain.key, models, **malformed)
    fast = send(proxy_url, api_key.key, models, **malformed)
    assert chain.status_code == fast.status_code == 200
    assert "csrftoken=" in chain.headers["set-cookie"]
    assert "set-cookie" not in fast.headers
    assert "vary" not in fast.headers


def test_admin_pages_keep_sessions_and_csrf(proxy_url: str, transactional_db: None) -> None:
    page = httpx.get(f"{proxy_url}/admin/login/", timeout=30)
    assert page.status_code == 200
    assert "csrftoken=" in page.headers["set-cookie"]
    assert page.headers["vary"] == "Cookie"
    without_token = httpx.post(
        f"{proxy_url}/admin/login/", data={"username": "a", "password": "b"}, timeout=30
    )
    assert without_token.status_code == 403
    assert "CSRF" in without_token.text


def respond(request: HttpRequest, *, fast_path: bool) -> tuple[HttpResponse, list[str]]:
    """Django's ASGI handler's response, built with or without ApiFastPath, and the middleware
    hooks that ran on a thread meanwhile.

    async_to_sync runs the handler's event loop on a thread of its own, and Django sends each
    synchronous hook back to this one (sync_to_async): what runs here is a hop off the loop.
    """
    names = [name for name in settings.MIDDLEWARE if fast_path or name != FAST_PATH]
    with override_settings(MIDDLEWARE=names):
        handler = ASGIHandler()
    hooks: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name in MIDDLEWARE_HOOKS:
            hooks.append(frame.f_code.co_qualname)

    sys.setprofile(profile)
    try:
        response = async_to_sync(handler.get_response_async)(request)
    finally:
        sys.setprofile(None)
    assert isinstance(response, HttpResponse)
    return response, hooks


def api_request(path: str, **extra: Any) -> HttpRequest:
    """A request needing neither Redis nor the database: no key (401), or the metrics."""
    factory = AsyncRequestFactory()
    if path == "/metrics":
        return factory.get(path, **extra)
    return factory.post(path, json.dumps(VALID), content_type="application/json", **extra)


def steady(response: HttpResponse) -> tuple[int, dict[str, str]]:
    return response.status_code, steady_headers(dict(response.items()))


@pytest.mark.parametrize("path", ["/v1/messages", "/metrics"])
def test_api_requests_take_no_thread_for_middleware(path: str) -> None:
    chain, chain_hooks = respond(api_request(path), fast_path=False)
    fast, fast_hooks = respond(api_request(path), fast_path=True)
    assert "SessionMiddleware.process_request" in chain_hooks  # the measure sees the hops
    assert fast_hooks == []
    assert steady(fast) == steady(chain)


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
def test_https_redirect_and_hsts_apply_as_in_the_full_chain(secure: bool) -> None:
    with override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=3600):
        chain, _ = respond(api_request("/v1/messages", secure=secure), fast_path=False)
        fast, _ = respond(api_request("/v1/messages", secure=secure), fast_path=True)
    assert steady(fast) == steady(chain)
    if secure:
        assert fast.status_code == 401
        assert fast["Strict-Transport-Security"] == "max-age=3600"
    else:
        assert fast.status_code == 301
        assert fast["Location"] == "https://testserver/v1/messages"


@override_settings(ROOT_URLCONF=__name__)
def test_an_exception_escaping_a_view_gets_the_full_chains_500() -> None:
    chain, _ = respond(AsyncRequestFactory().get("/v1/failing"), fast_path=False)
    fast, _ = respond(AsyncRequestFactory().get("/v1/failing"), fast_path=True)
    assert fast.status_code == 500
    assert steady(fast) == steady(chain)
    assert json.loads(fast.content)["error"] == json.loads(chain.content)["error"]
