"""App configuration for the proxy app."""

from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"
    verbose_name = "Proxy"

    def ready(self) -> None:
        from proxy import signals  # noqa: F401  (connects the receivers)
