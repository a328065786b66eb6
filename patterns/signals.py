"""Signals used only to invalidate the compiled rules in every process."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from patterns.models import AllowedValue, Pattern, SensitiveTerm
from patterns.services import rules_changed


@receiver(post_save, sender=Pattern)
@receiver(post_delete, sender=Pattern)
@receiver(post_save, sender=SensitiveTerm)
@receiver(post_delete, sender=SensitiveTerm)
@receiver(post_save, sender=AllowedValue)
@receiver(post_delete, sender=AllowedValue)
def bump_rules_version(**kwargs: Any) -> None:
    # After commit: another process must not reload before the change is visible to it.
    transaction.on_commit(rules_changed)
