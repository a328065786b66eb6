"""The Messages API endpoints: thin async views over proxy.services."""

from __future__ import annotations

from typing import Any

from adrf.views import APIView
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from config.logging import request_id_var
from patterns.store import Versions
from proxy import catalog, metrics, services
from proxy.audit import write_audit_later
from proxy.auth import ApiKeyAuthentication
from proxy.errors import ProxyError, RequestTooLarge
from proxy.health import health_report
from proxy.keys import secret_matches
from proxy.validation import parse_json_body, validate_messages_request


class _ProxyView(APIView):
    authentication_classes = (ApiKeyAuthentication,)
    permission_classes = (IsAuthenticated,)
    endpoint = ""

    def _call(self, request: Request, *, count_tokens: bool = False) -> services.ProxyCall:
        principal: Any = request.user  # a KeyPrincipal: IsAuthenticated has run
        versions = request.auth  # read from Redis while authenticating (None if it failed)
        call = services.ProxyCall(
            principal=principal,
            endpoint=self.endpoint,
            body={},
            headers=request.headers,
            request_id=request_id_var.get(),
            rules_version=versions.rules if isinstance(versions, Versions) else None,
            routes_version=versions.routes if isinstance(versions, Versions) else None,
            store_unavailable=versions is None,
        )
        try:
            try:
                raw = request.body
            except RequestDataTooBig:
                raise RequestTooLarge() from None
            call.body = parse_json_body(raw)
            validate_messages_request(call.body, count_tokens=count_tokens)
        except ProxyError as error:
            write_audit_later(call.failed(error))
            raise
        return call


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


class _ModelsView(APIView):
    authentication_classes = (ApiKeyAuthentication,)
    permission_classes = (IsAuthenticated,)

    async def _models(self, request: Request) -> list[dict[str, Any]]:
        principal: Any = request.user  # a KeyPrincipal: IsAuthenticated has run
        versions = request.auth if isinstance(request.auth, Versions) else None
        return await services.available_models(principal, versions)


class ModelsView(_ModelsView):
    """GET /v1/models: what clients may request, paged like Anthropic's list."""

    async def get(self, request: Request) -> Response:
        models = await self._models(request)
        return Response(catalog.model_page(models, request.query_params))


class ModelDetailView(_ModelsView):
    """GET /v1/models/<id>: one model of the list, or 404."""

    async def get(self, request: Request, model_id: str) -> Response:
        return Response(catalog.find_model(await self._models(request), model_id))


class HealthView(APIView):
    """GET /health: component states; 200 when this process can serve, 503 when not."""

    authentication_classes = (ApiKeyAuthentication,)

    def get_permissions(self) -> list[Any]:
        return [IsAuthenticated()] if settings.HEALTH_REQUIRES_KEY else []

    async def get(self, request: Request) -> Response:
        deep = request.query_params.get("deep", "") in {"1", "true", "yes"}
        report, status = await health_report(deep=deep)
        return Response(report, status=status)


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition; with METRICS_TOKEN set, only for Authorization: Bearer <token>."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret_matches(given.strip(), token):
            return HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)
