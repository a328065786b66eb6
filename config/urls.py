"""Root URL routes: the admin, the dashboard, and everything else from the proxy app."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from proxy.dashboard import dashboard

# Every admin page names the product, not the framework.
admin.site.site_header = "Masking proxy administration"
admin.site.site_title = "Masking proxy admin"
admin.site.index_title = "Masking proxy: masking rules, API keys and model routes"
# No "View site" link: the proxy has no home page ("/" is an API 404); the index links the
# dashboard and the docs instead.
admin.site.site_url = None

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
    path("dashboard/", dashboard, name="dashboard"),
    path("", include("proxy.urls")),
]

# Anthropic-shaped errors for unknown routes and unexpected failures.
handler404 = "proxy.errors.not_found"
handler500 = "proxy.errors.server_error"
