"""Routes of the Messages API."""

from django.urls import URLPattern, URLResolver, path

from proxy.views import CountTokensView, MessagesView

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/messages", MessagesView.as_view(), name="messages"),
    path("v1/messages/count_tokens", CountTokensView.as_view(), name="count-tokens"),
]
