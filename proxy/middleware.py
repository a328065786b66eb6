"""Our middleware: an id for every request (in the request-id header, error bodies and every
log line), and a way for API requests around Django's synchronous middleware."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, SuspiciousOperation
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import Resolver404, ResolverMatch, resolve
from django.utils.module_loading import import_string

from config.logging import request_id_var

# The API's routes (proxy/urls.py). None ends in a slash: "/health/" resolves to nothing and
# takes the full chain to Django's 404, like any unknown path.
API_PATH = re.compile(r"/(?:v1/.*|health|metrics)", re.DOTALL)

# What Django's middleware does to an API request, ApiFastPath does itself with these: the
# HTTPS redirect, HSTS and the other security headers; the Host check and Content-Length;
# X-Frame-Options.
APPLIED = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    }
)
# These have nothing to do for one: an API key authenticates it, not a session or a login; its
# views are exempt from CSRF; no static file or admin message lives under its paths.
SKIPPED = frozenset(
    {
        "servestatic.middleware.ServeStaticMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
)

RequestCheck = Callable[[HttpRequest], HttpResponseBase | None]
ResponseStep = Callable[[HttpRequest, HttpResponseBase], HttpResponseBase]


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


class _EitherMode:
    """A middleware that runs async under ASGI and sync under WSGI, as its chain does."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._respond_async(request)
        return self._respond(request)

    def _respond(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = self.get_response(request)
        return response

    async def _respond_async(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = await self.get_response(request)
        return response


class RequestIdMiddleware(_EitherMode):
    """Sets request.request_id and the logging context, and the response's request-id."""

    def _respond(self, request: HttpRequest) -> HttpResponseBase:
        request_id = _start(request)
        response: HttpResponseBase = self.get_response(request)
        response["request-id"] = request_id
        return response

    async def _respond_async(self, request: HttpRequest) -> HttpResponseBase:
        request_id = _start(request)
        response: HttpResponseBase = await self.get_response(request)
        response["request-id"] = request_id
        return response


def _start(request: HttpRequest) -> str:
    request_id = new_request_id()
    request.request_id = request_id  # type: ignore[attr-defined]
    request_id_var.set(request_id)
    return request_id


class ApiFastPath(_EitherMode):
    """Calls the API's views on the event loop, past Django's synchronous middleware.

    Under ASGI, Django runs each synchronous middleware's process_request and process_response
    on a thread (sync_to_async): over a dozen round trips a request with the admin's chain. Idle
    they cost little; in a busy process each waits for the GIL, and they make most of a small
    request's latency (bench/fairness_bench.py). Anything this does not recognise as an API
    request, or would not answer exactly as the chain does, takes the chain. Under WSGI (and
    Django's synchronous test client) there is no loop to stay on: every request takes it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        middleware = list(settings.MIDDLEWARE)
        after = middleware[middleware.index(f"{__name__}.ApiFastPath") + 1 :]
        unknown = [name for name in after if name not in APPLIED | SKIPPED]
        if unknown:
            raise ImproperlyConfigured(
                f"ApiFastPath does not know what {', '.join(unknown)} would do to API requests: "
                "list it in proxy.middleware.APPLIED or SKIPPED"
            )
        # Django's own classes, so that settings and headers are exactly the chain's; only
        # their plain methods are called here, never the __call__ that hops to a thread.
        applied = [import_string(name)(get_response) for name in after if name in APPLIED]
        self.checks: list[RequestCheck] = [
            m.process_request for m in applied if hasattr(m, "process_request")
        ]
        self.steps: list[ResponseStep] = [m.process_response for m in reversed(applied)]

    async def _respond_async(self, request: HttpRequest) -> HttpResponseBase:
        match = self._api_view(request)
        if match is None:
            response: HttpResponseBase = await self.get_response(request)
            return response
        request.resolver_match = match
        try:
            response = await _view_response(request, match)
        except Exception as exc:  # noqa: BLE001 - as Django wraps every middleware
            # The response the chain would give (proxy.errors' 404 and 500 handlers), with
            # the headers below like any other.
            response = await sync_to_async(response_for_exception, thread_sensitive=False)(
                request, exc
            )
        for step in self.steps:
            response = step(request, response)
        return response

    def _api_view(self, request: HttpRequest) -> ResolverMatch | None:
        """The API view to call here, or None to leave the request to the chain."""
        if not API_PATH.fullmatch(request.path_info):
            return None
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return None
        # A view CSRF could refuse, or a synchronous one (a thread either way), takes the
        # chain; the API's views are async and exempt.
        if not (iscoroutinefunction(match.func) and getattr(match.func, "csrf_exempt", False)):
            return None
        # Anything but "go on" (an HTTPS redirect, a Host not allowed) the chain answers as
        # it always has, its logging and headers included.
        try:
            if any(check(request) is not None for check in self.checks):
                return None
        except (SuspiciousOperation, PermissionDenied):
            return None
        return match


async def _view_response(request: HttpRequest, match: ResolverMatch) -> HttpResponseBase:
    """What Django's handler does around a view (BaseHandler._get_response_async), without
    its thread hops. CSRF's view hook lets exempt views through, and no middleware here has
    view, exception or template-response hooks."""
    response: HttpResponseBase = await match.func(request, *match.args, **match.kwargs)
    render = getattr(response, "render", None)
    if callable(render):
        # A DRF Response renders its JSON here, on the loop: less work than a hop to a thread.
        response = await render() if iscoroutinefunction(render) else render()
    return response
