"""The Messages API endpoints: thin async views over proxy.services."""

from __future__ import annotations

import secrets
from typing import Any

from adrf.views import APIView
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from proxy import services
from proxy.auth import ApiKeyAuthentication
from proxy.errors import RequestTooLarge
from proxy.validation import parse_json_body, validate_messages_request


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


class _ProxyView(APIView):
    authentication_classes = (ApiKeyAuthentication,)
    permission_classes = (IsAuthenticated,)
    endpoint = ""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before authentication, so that even a 401 carries its request id.
        request.proxy_request_id = new_request_id()  # type: ignore[attr-defined]
        super().initial(request, *args, **kwargs)

    def finalize_response(
        self, request: Request, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)
        request_id = getattr(request, "proxy_request_id", "")
        if request_id:
            response["request-id"] = request_id
        return response

    def _call(self, request: Request, *, count_tokens: bool = False) -> services.ProxyCall:
        try:
            raw = request.body
        except RequestDataTooBig:
            raise RequestTooLarge() from None
        body = parse_json_body(raw)
        validate_messages_request(body, count_tokens=count_tokens)
        principal: Any = request.user  # a KeyPrincipal: IsAuthenticated has run
        return services.ProxyCall(
            principal=principal,
            endpoint=self.endpoint,
            body=body,
            headers=request.headers,
            request_id=request.proxy_request_id,  # type: ignore[attr-defined]
        )


class MessagesView(_ProxyView):
    endpoint = "messages"

    async def post(self, request: Request) -> HttpResponseBase:
        result = await services.send_message(self._call(request))
        if isinstance(result, dict):
            return Response(result)
        return StreamingHttpResponse(
            result,
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


class CountTokensView(_ProxyView):
    endpoint = "count_tokens"

    async def post(self, request: Request) -> HttpResponse:
        return Response(await services.count_tokens(self._call(request, count_tokens=True)))
