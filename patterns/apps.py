"""App configuration for the masking rules."""

from django.apps import AppConfig


class PatternsConfig(AppConfig):
    name = "patterns"
    verbose_name = "Masking rules"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from patterns import signals  # noqa: F401  (connects the rules-version bump)
