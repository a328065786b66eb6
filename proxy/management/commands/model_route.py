"""manage.py model_route list | set PATTERN LITELLM_MODEL [options] | delete PATTERN.

The same routes as the admin's Proxy > Model routes, for scripts and first set-ups. `set`
creates the route or replaces its settings; running proxies pick the change up on their next
request.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import ProtectedError

from proxy.models import ModelRoute, RouteFallback
from proxy.routes import read_credential


class Command(BaseCommand):
    help = "List, create or change, and delete model routes (requested model -> provider)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="every route, in the order they are tried")
        route = actions.add_parser("set", help="create a route, or replace its settings")
        route.add_argument("pattern", help="the model name clients send; * for any characters")
        route.add_argument("litellm_model", help="provider/model, e.g. openai/gpt-4o")
        route.add_argument("--api-base", default="", help="the provider's base URL")
        route.add_argument(
            "--api-key-env", default="", help="the NAME of the variable holding the key"
        )
        route.add_argument("--timeout", type=float, default=None, help="read timeout (s)")
        route.add_argument("--connect-timeout", type=float, default=None, help="seconds")
        route.add_argument("--order", type=int, default=100, help="lower is tried first")
        route.add_argument("--display-name", default="", help="the name GET /v1/models shows")
        route.add_argument(
            "--fallback",
            action="append",
            default=[],
            metavar="PATTERN",
            help="a route to try when this one fails (repeat, in order)",
        )
        route.add_argument("--disabled", action="store_true", help="save it switched off")
        delete = actions.add_parser("delete", help="delete a route")
        delete.add_argument("pattern")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            self._list()
        elif action == "set":
            self._set(options)
        else:
            self._delete(options["pattern"])

    def _list(self) -> None:
        routes = ModelRoute.objects.prefetch_related("fallback_links__fallback")
        for route in routes:
            fallbacks = ", ".join(
                link.fallback.model_pattern for link in route.fallback_links.all()
            )
            self.stdout.write(
                f"{route.order:>5}  {route.model_pattern} -> {route.litellm_model}"
                f"{'' if route.enabled else '  (disabled)'}"
                f"{f'  at {route.api_base}' if route.api_base else ''}"
                f"{f'  key {route.api_key_env}' if route.api_key_env else ''}"
                f"{f'  then {fallbacks}' if fallbacks else ''}"
            )

    def _set(self, options: dict[str, Any]) -> None:
        route = ModelRoute.objects.filter(model_pattern=options["pattern"]).first()
        created = route is None
        route = route or ModelRoute(model_pattern=options["pattern"])
        route.litellm_model = options["litellm_model"]
        route.api_base = options["api_base"]
        route.api_key_env = options["api_key_env"]
        route.timeout_seconds = options["timeout"]
        route.connect_timeout_seconds = options["connect_timeout"]
        route.order = options["order"]
        route.display_name = options["display_name"]
        route.enabled = not options["disabled"]
        fallbacks = [self._route(pattern) for pattern in options["fallback"]]
        _check(route)
        with transaction.atomic():
            route.save()
            route.fallback_links.all().delete()
            for position, fallback in enumerate(fallbacks):
                link = RouteFallback(route=route, fallback=fallback, position=position)
                _check(link)
                link.save()
        self.stdout.write(f"{'Created' if created else 'Updated'} route {route}.")
        if route.api_key_env and not read_credential(route.api_key_env):
            self.stderr.write(
                f"Note: {route.api_key_env} is not set here; set it where the proxy runs."
            )

    def _delete(self, pattern: str) -> None:
        route = self._route(pattern)
        try:
            route.delete()
        except ProtectedError:
            users = ModelRoute.objects.filter(fallback_links__fallback=route)
            names = ", ".join(sorted(user.model_pattern for user in users))
            raise CommandError(f"{pattern} is a fallback of {names}; change those first.") from None
        self.stdout.write(f"Deleted route {pattern}.")

    def _route(self, pattern: str) -> ModelRoute:
        route = ModelRoute.objects.filter(model_pattern=pattern).first()
        if route is None:
            raise CommandError(f"No route {pattern!r}; `model_route list` shows them.")
        return route


def _check(instance: ModelRoute | RouteFallback) -> None:
    try:
        instance.full_clean()
    except ValidationError as exc:
        problems = (f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
        raise CommandError("; ".join(problems)) from None
