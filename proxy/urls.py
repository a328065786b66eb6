"""Routes of the Messages API."""

from django.urls import URLPattern, URLResolver, path

from proxy.views import (
    CountTokensView,
    HealthView,
    MessagesView,
    ModelDetailView,
    ModelsView,
    metrics_view,
)

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/messages", MessagesView.as_view(), name="messages"),
    path("v1/messages/count_tokens", CountTokensView.as_view(), name="count-tokens"),
    path("v1/models", ModelsView.as_view(), name="models"),
    path("v1/models/<path:model_id>", ModelDetailView.as_view(), name="model-detail"),
    path("health", HealthView.as_view(), name="health"),
    path("metrics", metrics_view, name="metrics"),
]
