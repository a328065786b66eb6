"""manage.py prune_audit [--days N] [--dry-run]: remove audit records past their retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from proxy.models import AuditRecord

BATCH = 5_000


class Command(BaseCommand):
    help = "Delete audit records older than AUDIT_RETENTION_DAYS (or --days), in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="override the retention")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] or settings.AUDIT_RETENTION_DAYS
        cutoff = timezone.now() - timedelta(days=days)
        old = AuditRecord.objects.filter(created_at__lt=cutoff)
        if options["dry_run"]:
            self.stdout.write(f"{old.count()} audit records are older than {days} days.")
            return
        deleted = 0
        # Small batches keep each transaction (and lock) short on a large, live table.
        while batch := list(old.values_list("pk", flat=True)[:BATCH]):
            deleted += AuditRecord.objects.filter(pk__in=batch).delete()[0]
        self.stdout.write(f"Deleted {deleted} audit records older than {days} days.")
