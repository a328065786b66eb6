"""Routes of the Messages API."""

from django.urls import URLPattern, URLResolver, path

from proxy.views import CountTokensView, HealthView, MessagesView, metrics_view

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/messages", MessagesView.as_view(), name="messages"),
    path("v1/messages/count_tokens", CountTokensView.as_view(), name="count-tokens"),
    path("health", HealthView.as_view(), name="health"),
    path("metrics", metrics_view, name="metrics"),
]
