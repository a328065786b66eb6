"""URL routes of the proxy app."""

from django.urls import URLPattern, URLResolver

# The Messages API routes arrive with the /v1/messages work.
urlpatterns: list[URLPattern | URLResolver] = []
