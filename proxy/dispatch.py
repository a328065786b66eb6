"""adrf's APIView, with authentication and permission checks run on the event loop.

adrf runs a request's checks on a thread (sync_to_async) and, for an async authenticator
such as ours, comes back to the loop for it (async_to_sync): two round trips between threads
per request. Idle they cost little; in a busy process every hop waits for the GIL, and
small requests pay that many times over. The API's checks are cheap and its authenticator
is async, so they run where the request already is.
"""

from __future__ import annotations

import inspect
from typing import Any

from adrf.views import APIView
from django.http.response import HttpResponseBase
from rest_framework import exceptions


class LoopAPIView(APIView):
    """An adrf APIView whose async handlers and checks all run on the event loop.

    Its authenticators may be coroutines or plain functions; its permissions and throttles
    must be plain functions (async ones would need a thread to block on).
    """

    async def async_dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.args, self.kwargs = args, kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        try:
            await _authenticate(drf_request)
            self.initial(drf_request, *args, **kwargs)  # user known: checks only
            method = (drf_request.method or "").lower()
            handler: Any = (
                getattr(self, method, self.http_method_not_allowed)
                if method in self.http_method_names
                else self.http_method_not_allowed
            )
            response = handler(drf_request, *args, **kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:  # noqa: BLE001 - DRF's own dispatch does the same
            response = self.handle_exception(exc)
        finalized: HttpResponseBase = self.finalize_response(drf_request, response, *args, **kwargs)
        self.response = finalized
        return finalized


async def _authenticate(request: Any) -> None:
    """DRF's Request._authenticate (its private steps included), awaiting coroutine
    authenticators. request: a rest_framework Request."""
    for authenticator in request.authenticators:
        try:
            result = authenticator.authenticate(request)
            if inspect.isawaitable(result):
                result = await result
        except exceptions.APIException:
            request._not_authenticated()
            raise
        if result is not None:
            request._authenticator = authenticator
            request.user, request.auth = result
            return
    request._not_authenticated()
