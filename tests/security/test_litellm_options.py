"""No field of a client's body steers LiteLLM: destination, credential, callbacks, headers, files.

The option names are read off the installed LiteLLM, not written from memory: the parameters of
the functions the proxy calls, LiteLLM's own list of its parameters, and every name the LiteLLM
modules loaded by a real request read from their **kwargs. Each name is sent as a top-level body
field with hostile values (a URL of a capture server, a path to a canary file, dicts of headers,
callback names), streamed and not, to the default Anthropic route and to an OpenAI-compatible
route. The provider key must reach only the fake provider, nothing may reach the capture server,
no callback may be registered, no file opened.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.masking import FORWARDED_FIELDS
from proxy.models import ModelRoute
from proxy.routes import routes_changed
from tests.source import parse_file
from tests.support.constants import UPSTREAM_KEY
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.fakes.openai_upstream import FakeOpenAI
from tests.support.fakes.server import FakeServer, Receive, RecordedRequest, Reply
from tests.support.live import IssuedKey

ROUTE_KEY = "sk-openai-route-secret-for-this-test"
BODY = {"model": "fake-echo", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
_KWARGS_READS = ("get", "pop", "setdefault")


class CaptureServer(FakeServer):
    """Where an attacker would like the proxy's requests to go: it records and says 200."""

    name = "capture"

    async def answer(self, request: RecordedRequest, receive: Receive, reply: Reply) -> None:
        await reply.send_json(200, {})


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureServer]:
    server = CaptureServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class _OpenedFiles:
    """Paths under a canary directory that anything in this process opened (an audit hook)."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="canary-")
        self.opened: list[str] = []
        sys.addaudithook(self._hook)  # hooks cannot be removed: the directory scopes it

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args and str(args[0]).startswith(self.directory):
            self.opened.append(str(args[0]))


@pytest.fixture(scope="module")
def opened_files() -> _OpenedFiles:
    return _OpenedFiles()


def _kwargs_names(path: Path) -> set[str]:
    """Names a module reads from a **kwargs dict: kwargs.get("x"), kwargs["x"], "x" in kwargs."""
    try:
        tree = parse_file(path)
    except (SyntaxError, UnicodeDecodeError, OSError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _KWARGS_READS
            and _is_kwargs(node.func.value)
            and node.args
        ):
            names |= _string(node.args[0])
        elif isinstance(node, ast.Subscript) and _is_kwargs(node.value):
            names |= _string(node.slice)
        elif isinstance(node, ast.Compare) and any(_is_kwargs(c) for c in node.comparators):
            names |= _string(node.left)
    return names


def _is_kwargs(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and (
        node.id.endswith("kwargs") or node.id == "litellm_params"
    )


def _string(node: ast.expr) -> set[str]:
    return {node.value} if isinstance(node, ast.Constant) and isinstance(node.value, str) else set()


def litellm_option_names() -> set[str]:
    """Every keyword the installed LiteLLM accepts or reads on the paths a request takes.

    Call after the proxy has served requests, so that the modules they needed are loaded.
    """
    import litellm
    from litellm.types.utils import all_litellm_params

    names = set(all_litellm_params)
    entry_points = [
        litellm.anthropic.messages.acreate,
        litellm.anthropic_messages,
        litellm.acompletion,
        litellm.completion,
        importlib.import_module("litellm.llms.anthropic.messages.native.handler"),
    ]
    for entry in entry_points:
        functions = (
            [f for _, f in inspect.getmembers(entry, inspect.isfunction)]
            if inspect.ismodule(entry)
            else [entry]
        )
        for function in functions:
            names |= {
                p.name
                for p in inspect.signature(function).parameters.values()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            }
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and getattr(module, "__name__", "").startswith("litellm"):
            names |= _kwargs_names(Path(file))
    return {name for name in names if name and name not in FORWARDED_FIELDS}


def _callback_state() -> dict[str, str]:
    import litellm

    state = {}
    for name in dir(litellm):
        value = getattr(litellm, name, None)
        if "callback" in name.lower() and isinstance(value, list | dict | tuple | set):
            state[name] = repr(value)
    return state


def _hostile_bodies(names: set[str], capture: str, canary: str) -> list[dict[str, Any]]:
    """One body per kind of hostile value, each setting every option name to it."""
    kinds: list[Any] = [
        lambda name: f"{capture}/{name}",
        lambda name: f"{canary}/{name}",
        lambda name: True,
        lambda name: ["langsmith", "webhook", "generic_api", f"{capture}/{name}"],
        lambda name: {
            "url": capture,
            "api_base": capture,
            "base_url": capture,
            "x-api-key": "attacker",
            "Authorization": "Bearer attacker",
            "Host": "attacker.example",
        },
    ]
    return [{**{name: kind(name) for name in sorted(names)}, **BODY} for kind in kinds]


_names: set[str] = set()


@pytest.fixture
def option_names(proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic) -> set[str]:
    """The option names, read once: after a plain request, streamed and not, so that the
    modules LiteLLM needs for them are loaded."""
    if not _names:
        for stream in (False, True):
            response = _post(proxy_url, api_key.key, {**BODY, "stream": stream}, "/v1/messages")
            assert response.status_code == 200, response.text
        upstream.clear()
        _names.update(litellm_option_names())
    # What the pen test used must be among them, or the enumeration is broken.
    expected = {"custom_llm_provider", "base_url", "api_base", "api_key", "headers"}
    expected |= {"success_callback", "callbacks", "mock_response", "chatgpt_auth_file"}
    assert expected <= _names, expected - _names
    return _names


def _post(proxy_url: str, key: str, body: dict[str, Any], path: str) -> httpx.Response:
    with httpx.Client(timeout=60) as http:
        if body.get("stream"):
            with http.stream(
                "POST", f"{proxy_url}{path}", json=body, headers={"x-api-key": key}
            ) as response:
                response.read()
                return response
        return http.post(f"{proxy_url}{path}", json=body, headers={"x-api-key": key})


def _assert_only_the_provider_was_reached(
    requests: list[RecordedRequest], *, key_header: str, key: str, capture: CaptureServer
) -> None:
    assert capture.requests == []
    assert requests, "nothing reached the provider"
    for request in requests:
        assert request.headers.get(key_header) == key
        for name, value in request.headers.items():
            assert "attacker" not in value and str(capture.port) not in value, name
        assert str(capture.port).encode() not in request.body
        if request.json is not None:
            unknown = set(request.json) - FORWARDED_FIELDS - {"n", "stream_options"}
            assert not unknown, unknown


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("stream", [False, True])
def test_no_litellm_option_in_a_body_changes_where_the_request_goes_or_what_runs(
    proxy_url: str,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    capture: CaptureServer,
    opened_files: _OpenedFiles,
    option_names: set[str],
    path: str,
    stream: bool,
) -> None:
    if stream and path.endswith("count_tokens"):
        pytest.skip("count_tokens does not stream")
    callbacks, environment = _callback_state(), dict(os.environ)
    bodies = _hostile_bodies(option_names, capture.base_url, opened_files.directory)
    for body in bodies:
        response = _post(proxy_url, api_key.key, {**body, "stream": stream}, path)
        assert response.status_code == 200, response.text[:500]
    assert len(upstream.requests) == len(bodies)
    assert {r.path for r in upstream.requests} == {path}
    _assert_only_the_provider_was_reached(
        upstream.requests, key_header="x-api-key", key=UPSTREAM_KEY, capture=capture
    )
    assert _callback_state() == callbacks
    assert dict(os.environ) == environment
    assert opened_files.opened == []


@pytest.fixture
def openai_route(
    transactional_db: None, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("OPENAI_ROUTE_TEST_KEY", ROUTE_KEY)
    fake_openai.clear()
    ModelRoute.objects.create(
        model_pattern="fake-*",
        litellm_model="openai/{model}",
        api_base=f"{fake_openai.base_url}/v1",
        api_key_env="OPENAI_ROUTE_TEST_KEY",
        timeout_seconds=10.0,
    )
    routes_changed()
    yield fake_openai
    ModelRoute.objects.all().delete()
    routes_changed()


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_a_routes_key_reaches_only_its_own_api_base(
    proxy_url: str,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    openai_route: FakeOpenAI,
    capture: CaptureServer,
    stream: bool,
) -> None:
    steer = {
        "custom_llm_provider": "openai",
        "base_url": f"{capture.base_url}/v1",
        "api_base": f"{capture.base_url}/v1",
        "api_key": "attacker",
        "extra_headers": {"Authorization": "Bearer attacker"},
    }
    response = _post(proxy_url, api_key.key, {**BODY, **steer, "stream": stream}, "/v1/messages")
    assert response.status_code == 200, response.text[:500]
    assert upstream.requests == []
    _assert_only_the_provider_was_reached(
        openai_route.requests,
        key_header="authorization",
        key=f"Bearer {ROUTE_KEY}",
        capture=capture,
    )


def test_the_pen_tests_request_goes_to_the_provider_with_its_own_key(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, capture: CaptureServer
) -> None:
    body = {**BODY, "custom_llm_provider": "openai", "base_url": f"{capture.base_url}/v1"}
    response = _post(proxy_url, api_key.key, body, "/v1/messages")
    assert response.status_code == 200
    assert capture.requests == []
    [request] = upstream.requests
    assert request.headers["x-api-key"] == UPSTREAM_KEY
    assert "base_url" not in json.loads(request.body)
