"""Signals used only to invalidate what every process caches: API keys and model routes."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from patterns.signals import version_bumps_are_muted
from proxy.auth import keys_changed
from proxy.models import ApiKey, ModelRoute, RouteFallback
from proxy.routes import routes_changed


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def bump_keys_version(**kwargs: Any) -> None:
    # After commit: another process must not reload the key before the change is visible.
    transaction.on_commit(keys_changed)


@receiver(post_save, sender=ModelRoute)
@receiver(post_delete, sender=ModelRoute)
@receiver(post_save, sender=RouteFallback)
@receiver(post_delete, sender=RouteFallback)
def bump_routes_version(**kwargs: Any) -> None:
    if version_bumps_are_muted():
        return  # a batch (manage.py rules import) moves the version once itself
    transaction.on_commit(routes_changed)
