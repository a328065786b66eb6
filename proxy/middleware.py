"""Every request gets an id: in the request-id header, error bodies and every log line."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from config.logging import request_id_var


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


class RequestIdMiddleware:
    """Sets request.request_id and the logging context, and the response's request-id."""

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
