"""Signals used only to invalidate the API keys every process has cached."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from proxy.auth import keys_changed
from proxy.models import ApiKey


@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=ApiKey)
def bump_keys_version(**kwargs: Any) -> None:
    # After commit: another process must not reload the key before the change is visible.
    transaction.on_commit(keys_changed)
