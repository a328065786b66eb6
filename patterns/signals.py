"""Signals used only to invalidate the compiled rules in every process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from patterns.models import AllowedValue, Pattern, SensitiveTerm
from patterns.services import rules_changed

_muted: ContextVar[bool] = ContextVar("version_bumps_muted", default=False)


@contextmanager
def version_bumps_muted() -> Iterator[None]:
    """Within it, saving or deleting a rule (or a route) moves no version token: the caller
    changes many rows and moves each version once itself, after commit."""
    # A context variable, not a disconnected receiver: an admin saving a rule in another
    # thread at the same time must still move the version.
    token = _muted.set(True)
    try:
        yield
    finally:
        _muted.reset(token)


def version_bumps_are_muted() -> bool:
    """Whether the current context changes rows under version_bumps_muted()."""
    return _muted.get()


@receiver(post_save, sender=Pattern)
@receiver(post_delete, sender=Pattern)
@receiver(post_save, sender=SensitiveTerm)
@receiver(post_delete, sender=SensitiveTerm)
@receiver(post_save, sender=AllowedValue)
@receiver(post_delete, sender=AllowedValue)
def bump_rules_version(**kwargs: Any) -> None:
    if _muted.get():
        return
    # After commit: another process must not reload before the change is visible to it.
    transaction.on_commit(rules_changed)
