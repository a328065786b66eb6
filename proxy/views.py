"""The Messages API endpoints: thin async views over proxy.services."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from config.logging import request_id_var
from patterns.store import Versions
from proxy import catalog, metrics, services
from proxy.audit import report_outcome
from proxy.auth import (
    ApiKeyAuthentication,
    MetricsTokenAuthentication,
    bearer_token,
    is_metrics_token,
)
from proxy.dispatch import LoopAPIView
from proxy.errors import AuthenticationError, ProxyError, RequestTooLarge
from proxy.health import health_report
from proxy.validation import forwarded_headers


class _ProxyView(LoopAPIView):
    authentication_classes = (ApiKeyAuthentication,)
    permission_classes = (IsAuthenticated,)
    endpoint = ""

    async def _call(self, request: Request, *, count_tokens: bool = False) -> services.ProxyCall:
        principal: Any = request.user  # a KeyPrincipal: IsAuthenticated has run
        versions = request.auth  # read from Redis while authenticating (None if it failed)
        call = services.ProxyCall(
            principal=principal,
            endpoint=self.endpoint,
            body={},
            headers={},
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
            call.headers = forwarded_headers(request.headers)
            await services.accept_request(call, raw, count_tokens=count_tokens)
        except ProxyError as error:
            report_outcome(call.failed(error))
            raise
        return call


class MessagesView(_ProxyView):
    endpoint = "messages"

    async def post(self, request: Request) -> HttpResponseBase:
        result = await services.send_message(await self._call(request))
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
        call = await self._call(request, count_tokens=True)
        return Response(await services.count_tokens(call))


class _ModelsView(LoopAPIView):
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


DEEP_NEEDS_CREDENTIALS = (
    "The live provider probe (deep=1) needs a proxy API key (x-api-key or Authorization: "
    "Bearer) or the metrics token; /health without deep=1 needs none."
)


class HealthView(LoopAPIView):
    """GET /health: component states; 200 when this process can serve, 503 when not.

    Plain /health stays open (load balancers call it) unless HEALTH_REQUIRES_KEY; deep=1
    makes a provider call, so it needs a key or the metrics token unless HEALTH_DEEP_OPEN.
    """

    authentication_classes = (MetricsTokenAuthentication, ApiKeyAuthentication)

    def get_permissions(self) -> list[Any]:
        return [IsAuthenticated()] if settings.HEALTH_REQUIRES_KEY else []

    async def get(self, request: Request) -> Response:
        deep = request.query_params.get("deep", "") in {"1", "true", "yes"}
        caller: Any = request.user  # a principal, or None (UNAUTHENTICATED_USER) without one
        if deep and caller is None and not settings.HEALTH_DEEP_OPEN:
            raise AuthenticationError(DEEP_NEEDS_CREDENTIALS)
        report, status = await health_report(deep=deep)
        return Response(report, status=status)


# A bearer token guards it, not a cookie: CSRF has nothing to protect here, and an exempt view
# takes proxy.middleware.ApiFastPath. Read-only: GET and HEAD, other methods get 405.
@csrf_exempt
@require_safe
async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition; with METRICS_TOKEN set, only for Authorization: Bearer <token>."""
    if settings.METRICS_TOKEN and not is_metrics_token(bearer_token(request.headers)):
        return HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)
