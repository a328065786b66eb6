"""One error hierarchy and one handler: every failure reaches clients in Anthropic's shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from rest_framework import exceptions as drf
from rest_framework.response import Response

from config.logging import request_id_var

logger = logging.getLogger(__name__)


class ProxyError(Exception):
    """An error with the status, Anthropic error type and message a client should see."""

    status = 500
    error_type = "api_error"
    default_message = "Internal server error."
    # The LiteLLM model whose call failed, when a provider call did (for the audit).
    upstream_model = ""

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.headers = dict(headers or {})
        super().__init__(self.message)


class InvalidRequest(ProxyError):
    status, error_type = 400, "invalid_request_error"
    default_message = "The request is invalid."


class AuthenticationError(ProxyError):
    status, error_type = 401, "authentication_error"
    default_message = "Invalid or missing API key."


class PermissionDenied(ProxyError):
    status, error_type = 403, "permission_error"
    default_message = "This API key may not do that."


class NotFound(ProxyError):
    status, error_type = 404, "not_found_error"
    default_message = "Not found."


class RequestTooLarge(ProxyError):
    status, error_type = 413, "request_too_large"
    default_message = "The request body is too large."


class RateLimited(ProxyError):
    status, error_type = 429, "rate_limit_error"
    default_message = "This API key has reached its rate limit."


class MaskingUnavailable(ProxyError):
    status, error_type = 503, "api_error"
    default_message = "Masking is unavailable right now; the request was not sent upstream."


class RateLimitingUnavailable(ProxyError):
    """The key's use could not be counted (Redis): refused, as a key past its limit would be."""

    status, error_type = 503, "api_error"
    default_message = "Rate limiting is unavailable right now; the request was not sent upstream."


class ModelNotRouted(NotFound):
    default_message = "model: no route on this proxy serves the requested model."


class RoutesUnavailable(ProxyError):
    status = 503
    default_message = "The model routes could not be loaded; the request was not sent."


class ProviderNotConfigured(ProxyError):
    default_message = "The provider for this model is not configured on this server."


class UpstreamError(ProxyError):
    """An error the provider returned: its status and type are kept."""


class UpstreamUnreachable(ProxyError):
    status, error_type = 502, "api_error"
    default_message = "The upstream provider could not be reached."


class UpstreamTimeout(ProxyError):
    status, error_type = 504, "api_error"
    default_message = "The upstream provider did not answer in time."


def error_body(error_type: str, message: str, request_id: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


_DRF_ERRORS: tuple[tuple[type[drf.APIException], type[ProxyError]], ...] = (
    (drf.NotAuthenticated, AuthenticationError),
    (drf.AuthenticationFailed, AuthenticationError),
    (drf.PermissionDenied, PermissionDenied),
    (drf.NotFound, NotFound),
    (drf.ParseError, InvalidRequest),
    (drf.UnsupportedMediaType, InvalidRequest),
    (drf.ValidationError, InvalidRequest),
    (drf.MethodNotAllowed, InvalidRequest),
)


def as_proxy_error(exc: Exception) -> ProxyError:
    """The ProxyError a client should see for any exception (internals become a plain 500)."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, drf.NotAuthenticated):
        return AuthenticationError(
            "An API key is required: send x-api-key or Authorization: Bearer."
        )
    if isinstance(exc, drf.APIException):
        for drf_class, proxy_class in _DRF_ERRORS:
            if isinstance(exc, drf_class):
                message = exc.detail if isinstance(exc.detail, str) else None
                status = 405 if isinstance(exc, drf.MethodNotAllowed) else None
                return proxy_class(str(message) if message else None, status=status)
        return ProxyError(status=exc.status_code)
    # No detail of an unexpected exception reaches the client; its class reaches the log.
    logger.error("unexpected error: %s", type(exc).__name__)
    return ProxyError()


# Statuses Anthropic uses that HTTP does not name (Django's request log would otherwise say
# "Unknown Status Code").
REASON_PHRASES = {529: "Overloaded"}


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: render any exception in Anthropic's error shape."""
    error = as_proxy_error(exc)
    response = Response(_body(error), status=error.status)
    _finish(response, error)
    return response


def json_error(error: ProxyError) -> JsonResponse:
    """The same shape outside DRF (Django's 404 and 500 handlers)."""
    response = JsonResponse(_body(error), status=error.status)
    _finish(response, error)
    return response


def _finish(response: HttpResponseBase, error: ProxyError) -> None:
    for name, value in error.headers.items():
        response[name] = value
    if error.status in REASON_PHRASES:
        response.reason_phrase = REASON_PHRASES[error.status]


def _body(error: ProxyError) -> dict[str, Any]:
    request_id = request_id_var.get()
    return error_body(error.error_type, error.message, "" if request_id == "-" else request_id)


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(NotFound("No such endpoint."))


def server_error(request: HttpRequest) -> JsonResponse:
    return json_error(ProxyError())
