"""Rules as code: the document round-trips through an empty database, every problem of a bad
document is reported with its line before anything changes, --dry-run shows the diff and
changes nothing, and an import is one transaction that moves each version token once."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from django.core.management import CommandError, call_command
from django.test import override_settings

from patterns.models import AllowedValue, Pattern, SensitiveTerm
from patterns.services import rules_changed
from patterns.store import get_control_store
from proxy import rules_sync
from proxy.models import ModelRoute, RouteFallback
from proxy.routes import routes_changed
from proxy.rules_document import DocumentInvalid, build_document, dump_document, parse_document
from proxy.rules_sync import plan_import

pytestmark = pytest.mark.django_db

RULES_DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
SECRET_TERM = "Project Nightingale"  # a sensitive term: never in a message or a diff


def add_samples() -> None:
    """Terms, allowed values and routes (one with fallbacks) beside the seeded patterns."""
    SensitiveTerm.objects.create(term=SECRET_TERM, placeholder_prefix="CODENAME", note="q3")
    SensitiveTerm.objects.create(term="acme-internal", case_sensitive=True, enabled=False)
    AllowedValue.objects.create(value="example.com", note="documentation domain")
    AllowedValue.objects.create(value="127.0.0.1")
    spare = ModelRoute.objects.create(
        model_pattern="claude-spare", litellm_model="anthropic/claude-x", order=200
    )
    local = ModelRoute.objects.create(
        model_pattern="local-*",
        litellm_model="openai/{model}",
        api_base="http://vllm:8000/v1",
        api_key_env="ROUTES_TEST_KEY",
        timeout_seconds=30.0,
        connect_timeout_seconds=2.5,
        order=10,
        display_name="Local models",
    )
    other = ModelRoute.objects.create(model_pattern="gpt-4o", litellm_model="openai/gpt-4o")
    RouteFallback.objects.create(route=local, fallback=other, position=0)
    RouteFallback.objects.create(route=local, fallback=spare, position=1)


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("rules", "export", *args, stdout=out)
    return out.getvalue()


def import_(path: Path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("rules", "import", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def empty_database() -> None:
    RouteFallback.objects.all().delete()
    ModelRoute.objects.all().delete()
    for model in (Pattern, SensitiveTerm, AllowedValue):
        model.objects.all().delete()


def minimal(**extra: Any) -> dict[str, Any]:
    """A small valid document."""
    return {
        "schema_version": 1,
        "patterns": [
            {"name": "ticket", "regex": r"TCK-[0-9]{6}", "placeholder_prefix": "TICKET"},
        ],
        **extra,
    }


def problems_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(DocumentInvalid) as caught:
        plan_import(parse_document(text))
    return [(p.line, p.message) for p in caught.value.problems]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_then_import_into_an_empty_database_then_export_gives_the_same_document(
    fmt: str, tmp_path: Path, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    add_samples()
    assert Pattern.objects.count() > 90  # the seeded library, multi-line examples included
    first = export("--format", fmt)
    assert SECRET_TERM in first and "ROUTES_TEST_KEY" in first
    document = tmp_path / f"rules.{fmt}"
    document.write_text(first, encoding="utf-8")
    empty_database()

    with django_capture_on_commit_callbacks(execute=False):
        import_(document)

    assert export("--format", fmt) == first
    local = ModelRoute.objects.get(model_pattern="local-*")
    fallbacks = [link.fallback.model_pattern for link in local.fallback_links.all()]
    assert fallbacks == ["gpt-4o", "claude-spare"]


def test_the_document_has_a_schema_version_and_sorted_lists_without_ids_or_timestamps() -> None:
    add_samples()
    document = yaml.safe_load(export())
    assert list(document) == [
        "schema_version",
        "patterns",
        "sensitive_terms",
        "allowed_values",
        "model_routes",
    ]
    assert document["schema_version"] == 1
    names = [p["name"] for p in document["patterns"]]
    assert names == sorted(names)
    assert [v["value"] for v in document["allowed_values"]] == ["127.0.0.1", "example.com"]
    # Routes in the order they are tried.
    assert [r["model_pattern"] for r in document["model_routes"]] == [
        "local-*",
        "gpt-4o",
        "claude-spare",
    ]
    for entries in document.values():
        for entry in entries if isinstance(entries, list) else ():
            assert not {"id", "created_at", "updated_at"} & set(entry)


def test_json_output_is_chosen_by_the_file_name(tmp_path: Path) -> None:
    out = tmp_path / "rules.json"
    call_command("rules", "export", "--output", str(out), stderr=io.StringIO())
    assert json.loads(out.read_text())["schema_version"] == 1


def test_every_problem_is_reported_with_its_line() -> None:
    text = """\
schema_version: 1
patterns:
  - name: ticket
    regex: "TCK-(["
    placeholder_prefix: TICKET
  - name: order
    regex: "ORD-[0-9]+"
    placeholder_prefix: lower
    colour: blue
  - name: ticket
    regex: "T-[0-9]+"
    placeholder_prefix: T
    enabled: "yes"
sensitive_terms:
  - term: "Project Nightingale"
    placeholder_prefix: "bad prefix"
"""
    found = problems_of(text)
    lines = [line for line, _ in found]
    assert lines == sorted(lines)
    by_line = dict(found)
    assert "regex" in by_line[4]
    assert "placeholder_prefix" in by_line[8]
    assert "unknown field 'colour'" in by_line[9]
    assert "enabled must be true or false" in by_line[13]
    assert "placeholder_prefix" in by_line[16]
    assert all(SECRET_TERM not in message for _, message in found)


def test_a_name_twice_in_the_document_is_refused_at_the_second() -> None:
    document = minimal()
    document["patterns"].append(dict(document["patterns"][0]))
    text = dump_document(document)
    found = problems_of(text)
    assert len(found) == 1
    line, message = found[0]
    assert text.splitlines()[line - 1].strip().startswith("- name: ticket")
    assert line > 3 and "already the name of the entry at line 3" in message


def test_a_wrong_schema_version_and_an_unknown_list_are_refused() -> None:
    found = problems_of("schema_version: 2\npattern: []\n")
    assert found[0][0] == 1 and "schema_version 2 is not 1" in found[0][1]
    assert found[1][0] == 2 and "unknown key 'pattern'" in found[1][1]


def test_python_tags_are_refused_not_run() -> None:
    text = "schema_version: 1\npatterns:\n  - name: !!python/object/apply:os.getcwd []\n"
    found = problems_of(text)
    assert found[0][0] == 3 and "cannot be read" in found[0][1]


def test_a_fallback_must_name_another_route_of_the_document() -> None:
    routes = [
        {"model_pattern": "a", "litellm_model": "openai/a", "fallbacks": ["a", "missing"]},
    ]
    found = problems_of(dump_document(minimal(model_routes=routes)))
    assert [message.rsplit(": ", 1)[1] for _, message in found] == [
        "a route cannot fall back to itself",
        "no route of the document has this model pattern",
    ]


def test_a_route_holding_a_variable_the_operator_did_not_list_is_refused() -> None:
    routes = [{"model_pattern": "a", "litellm_model": "openai/a", "api_key_env": "SECRET_KEY"}]
    found = problems_of(dump_document(minimal(model_routes=routes)))
    assert len(found) == 1 and "api_key_env" in found[0][1] and "proxy's own" in found[0][1]


def test_a_document_that_leaves_nothing_to_mask_is_refused() -> None:
    document = minimal(sensitive_terms=[])
    document["patterns"][0]["trial"] = True
    found = problems_of(dump_document(document))
    assert "no enabled pattern" in found[0][1]
    # Lists the document leaves out keep what the database has: the seeded patterns.
    plan_import(parse_document(dump_document({"schema_version": 1, "sensitive_terms": []})))


def test_a_selection_adds_and_changes_its_rows_and_removes_none() -> None:
    before = Pattern.objects.count()
    chosen = list(Pattern.objects.order_by("name")[:2])
    document = build_document({"patterns": Pattern.objects.filter(pk__in=[p.pk for p in chosen])})
    assert document["selection"] is True
    document["patterns"][0]["description"] = "changed by the selection"
    document["patterns"].append({**document["patterns"][1], "name": "added_by_selection"})

    plan = plan_import(parse_document(dump_document(document)))
    rules_sync.apply_import(plan)

    assert sorted(change.action for change in plan.changes) == ["+", "~"]
    assert Pattern.objects.count() == before + 1
    assert Pattern.objects.get(name=chosen[0].name).description == "changed by the selection"


def test_a_selection_must_say_true_or_false() -> None:
    assert problems_of("schema_version: 1\nselection: maybe\npatterns: []\n") == [
        (2, "selection 'maybe' is not true or false")
    ]


def test_dry_run_prints_the_diff_and_changes_nothing(tmp_path: Path) -> None:
    add_samples()
    document = yaml.safe_load(export())
    patterns = {p["name"]: p for p in document["patterns"]}
    changed_name = next(iter(patterns))
    patterns[changed_name]["priority"] = 7
    removed_name = list(patterns)[1]
    document["patterns"].remove(patterns[removed_name])
    document["patterns"].append(
        {"name": "ticket", "regex": "TCK-[0-9]{6}", "placeholder_prefix": "T"}
    )
    document["sensitive_terms"] = [
        t for t in document["sensitive_terms"] if t["term"] != SECRET_TERM
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(dump_document(document))
    before = export()

    out, _ = import_(path, "--dry-run")

    assert export() == before
    assert "patterns: 1 added, 1 changed, 1 removed" in out
    assert "+ pattern 'ticket' (line" in out
    assert f"~ pattern '{changed_name}'" in out and "priority: " in out and "-> 7" in out
    assert f"- {removed_name}" in out
    assert "sensitive_terms: 0 added, 0 changed, 1 removed" in out
    assert "- CODENAME term #" in out and SECRET_TERM not in out
    assert "model_routes: 0 added, 0 changed, 0 removed" in out
    assert out.rstrip().endswith("Dry run: nothing was changed.")


def test_import_applies_in_one_transaction_and_moves_each_version_once(
    tmp_path: Path,
    redis_client: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    add_samples()
    document = yaml.safe_load(export())
    for pattern in document["patterns"][:10]:
        pattern["enabled"] = not pattern["enabled"]
    document["allowed_values"].append({"value": "localhost", "enabled": True, "note": ""})
    document["model_routes"][0]["fallbacks"] = ["claude-spare"]
    document["model_routes"] = [
        r for r in document["model_routes"] if r["model_pattern"] != "gpt-4o"
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(dump_document(document))
    control = get_control_store()
    rules_before, routes_before = control.rules_version(), control.routes_version()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        out, _ = import_(path)

    assert callbacks == [rules_changed, routes_changed]  # not one per row
    assert control.rules_version() != rules_before
    assert control.routes_version() != routes_before
    assert "Imported 13 change(s)." in out
    assert AllowedValue.objects.filter(value="localhost").exists()
    assert not ModelRoute.objects.filter(model_pattern="gpt-4o").exists()
    assert yaml.safe_load(export()) == yaml.safe_load(dump_document(document))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        out, _ = import_(path)
    assert callbacks == [] and "already matches" in out


def test_an_import_failing_half_way_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_samples()
    before = export()
    document = yaml.safe_load(before)
    document["patterns"] = document["patterns"][:50]
    document["model_routes"][1]["order"] = 5
    path = tmp_path / "rules.yaml"
    path.write_text(dump_document(document))

    def fail(changes: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(rules_sync, "_apply_routes", fail)
    with pytest.raises(RuntimeError):
        import_(path)
    assert export() == before


def test_a_bad_document_reports_both_problems_with_lines_and_changes_nothing(
    tmp_path: Path, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    before = export()
    path = tmp_path / "bad.yaml"
    path.write_text(
        "schema_version: 1\n"
        "patterns:\n"
        "  - name: ticket\n"
        "    regex: 'TCK-(['\n"
        "    placeholder_prefix: TICKET\n"
        "  - name: order\n"
        "    regex: 'ORD-[0-9]+'\n"
        "    placeholder_prefix: ORDER\n"
        "    priority: high\n"
    )
    err = io.StringIO()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(CommandError, match="2 problem"),
    ):
        call_command("rules", "import", str(path), stdout=io.StringIO(), stderr=err)

    messages = err.getvalue().splitlines()
    assert messages[0].startswith(f"{path}:4: ") and "regex" in messages[0]
    assert (
        messages[1].startswith(f"{path}:9: ") and "priority must be a whole number" in messages[1]
    )
    assert export() == before and callbacks == []


def test_the_document_holds_no_credential_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTES_TEST_KEY", "sk-never-in-a-document")
    add_samples()
    text = dump_document(build_document())
    assert "ROUTES_TEST_KEY" in text and "sk-never-in-a-document" not in text


@override_settings(PROXY_ROUTE_CREDENTIALS=["VLLM_API_KEY"])
def test_the_example_of_the_docs_is_a_document_the_import_accepts() -> None:
    text = RULES_DOC.read_text(encoding="utf-8")
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    plan = plan_import(parse_document(example))
    assert {change.action for change in plan.changes} >= {"+", "-"}  # vs the seeded library
