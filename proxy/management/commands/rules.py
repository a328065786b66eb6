"""manage.py rules export [--output FILE] [--format yaml|json] | import FILE [--dry-run].

Rules as code (docs/rules.md): the patterns, sensitive terms, allowed values and model routes
as one document to keep in Git, review, and promote from staging to production. `import`
checks the whole document first and changes nothing when any entry is wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from proxy.rules_document import (
    FORMATS,
    DocumentInvalid,
    build_document,
    dump_document,
    parse_document,
)
from proxy.rules_sync import apply_import, diff_lines, plan_import


class Command(BaseCommand):
    help = "Export the masking rules and model routes to a document, or import one."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        export = actions.add_parser(
            "export", help="write every rule and route to one YAML or JSON document"
        )
        export.add_argument("--output", "-o", help="the file to write (default: standard output)")
        export.add_argument(
            "--format",
            choices=FORMATS,
            help="yaml or json (default: json for a .json output, else yaml)",
        )
        load = actions.add_parser(
            "import",
            help="make the database equal to a document: for each list the document holds "
            "(patterns, sensitive_terms, allowed_values, model_routes), create, change and "
            "DELETE rows so that they match it; a list it leaves out is not touched",
        )
        load.add_argument("file", help="the YAML or JSON document ('-': standard input)")
        load.add_argument(
            "--dry-run", action="store_true", help="check it and print the diff; change nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "export":
            self._export(options["output"], options["format"])
        else:
            self._import(options["file"], dry_run=options["dry_run"])

    def _export(self, output: str | None, fmt: str | None) -> None:
        fmt = fmt or ("json" if output and output.endswith(".json") else "yaml")
        text = dump_document(build_document(), fmt=fmt)
        if output is None:
            self.stdout.write(text, ending="")
            return
        Path(output).write_text(text, encoding="utf-8")
        self.stderr.write(f"Rules written to {output}.")

    def _import(self, file: str, *, dry_run: bool) -> None:
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file} cannot be read: {exc}") from None
        try:
            plan = plan_import(parse_document(text))
        except DocumentInvalid as exc:
            for problem in exc.problems:
                self.stderr.write(f"{file}:{problem.line}: {problem.message}")
            raise CommandError(
                f"{file}: {len(exc.problems)} problem(s); nothing was changed."
            ) from None
        for line in diff_lines(plan):
            self.stdout.write(line)
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
        elif not plan.changes:
            self.stdout.write("The database already matches the document.")
        else:
            apply_import(plan)
            self.stdout.write(f"Imported {len(plan.changes)} change(s).")
