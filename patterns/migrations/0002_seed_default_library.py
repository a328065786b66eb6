"""Seed the default pattern library as it stands; later library changes ship as new migrations."""

from typing import Any

from django.db import migrations

from patterns.library import DEFAULT_PATTERNS


def _lines(examples: tuple[str, ...]) -> str:
    # One example per line; a line break inside an example is written as a literal \n.
    return "\n".join(example.replace("\n", "\\n") for example in examples)


def seed(apps: Any, schema_editor: Any) -> None:
    pattern_model = apps.get_model("patterns", "Pattern")
    for entry in DEFAULT_PATTERNS:
        pattern_model.objects.update_or_create(
            name=entry.name,
            defaults={
                "category": entry.category,
                "description": entry.description,
                "regex": entry.regex,
                "placeholder_prefix": entry.prefix,
                "priority": entry.priority,
                "validator": entry.validator,
                "context_keywords": "\n".join(entry.context_keywords),
                "context_regex": entry.context_regex,
                "context_window": entry.context_window,
                "positive_examples": _lines(entry.positive),
                "negative_examples": _lines(entry.negative),
                "enabled": True,
            },
        )


def unseed(apps: Any, schema_editor: Any) -> None:
    pattern_model = apps.get_model("patterns", "Pattern")
    pattern_model.objects.filter(name__in=[entry.name for entry in DEFAULT_PATTERNS]).delete()


class Migration(migrations.Migration):
    dependencies = [("patterns", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
