"""App configuration for the proxy app."""

from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"
    verbose_name = "Proxy"

    def ready(self) -> None:
        from django.conf import settings

        from patterns import scan_cache
        from proxy import signals  # noqa: F401  (connects the receivers)

        scan_cache.configure(settings.PROXY_SCAN_CACHE_MB * 1024 * 1024)
