"""manage.py create_api_key NAME [--namespace NS] [--expires-in-days N] [--rate-limit N]
[--max-streams N]: prints the key last."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from proxy.keys import generate_key
from proxy.models import ApiKey


class Command(BaseCommand):
    help = "Create a proxy API key and print it once (as the last line, for scripts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--namespace", default="", help="share placeholders with other keys")
        parser.add_argument("--expires-in-days", type=int, default=None)
        parser.add_argument(
            "--rate-limit",
            type=int,
            default=None,
            help="requests per minute (default: the server's; 0: no limit)",
        )
        parser.add_argument(
            "--max-streams",
            type=int,
            default=None,
            help="streams open at once (default: the server's; 0: no limit)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        new = generate_key()
        expires = options["expires_in_days"]
        api_key = ApiKey(
            name=options["name"],
            namespace=options["namespace"],
            prefix=new.prefix,
            key_hash=new.digest,
            expires_at=timezone.now() + timedelta(days=expires) if expires else None,
            rate_limit_per_minute=options["rate_limit"],
            max_concurrent_streams=options["max_streams"],
        )
        try:
            api_key.full_clean()
        except ValidationError as exc:
            problems = (
                f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items()
            )
            raise CommandError("; ".join(problems)) from None
        api_key.save()
        self.stdout.write(
            f"Created API key {api_key.name!r} (prefix {api_key.prefix}, namespace "
            f"{api_key.effective_namespace}). It is shown only now:"
        )
        self.stdout.write(new.key)
