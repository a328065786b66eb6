"""Presidio, as the engine benchmark's comparison: the same regexes, no NLP model.

Presidio's analyzer needs an NLP engine; its default loads a spaCy model, which it would
download from the internet. Here the AnalyzerEngine gets Presidio's own `NoOpNlpEngine`
(loads no model, returns empty artifacts) and a RecognizerRegistry holding one
`PatternRecognizer` per default pattern (same regex, case-sensitive like ours, score 1.0).
No predefined recognizer is loaded and no model is downloaded; spaCy is installed only
because presidio-analyzer depends on it.

Masking is `AnalyzerEngine.analyze` then `AnonymizerEngine.anonymize` with a custom operator
per entity that numbers values like our placeholders (AWS_EC2_001, same value same
placeholder). Restoring is `DeanonymizeEngine.deanonymize` with a small deanonymizer that
looks each placeholder up, given the positions the anonymizer reported. Like the `re` floor,
Presidio gets the regexes only: no validators, no context windows, no boundary rules.

Presidio is optional (`pip install -r requirements-bench.txt`): it is imported through
importlib, so this module loads and type-checks without it.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from patterns.engine import format_placeholder
from patterns.library import DEFAULT_PATTERNS

NOT_INSTALLED = "not installed: pip install -r requirements-bench.txt"
RESTORE_OPERATOR = "restore_placeholder"
# Patterns we apply only near context keywords: without an NLP model Presidio cannot judge
# context, so they run (their regex cost is paid) but score below the threshold.
CONTEXT_ONLY_SCORE = 0.01
SCORE_THRESHOLD = 0.5


def load() -> tuple[PresidioMasker | None, str]:
    """A ready masker, or None and why not (not installed, or unusable offline)."""
    try:
        analyzer = importlib.import_module("presidio_analyzer")
        nlp_engine = importlib.import_module("presidio_analyzer.nlp_engine")
        anonymizer = importlib.import_module("presidio_anonymizer")
        entities = importlib.import_module("presidio_anonymizer.entities")
        operators = importlib.import_module("presidio_anonymizer.operators")
    except ImportError:
        return None, NOT_INSTALLED
    try:
        return PresidioMasker(analyzer, nlp_engine, anonymizer, entities, operators), ""
    except (OSError, ValueError) as exc:
        # A model download attempt fails offline with OSError; a misconfiguration with
        # ValueError. Either way the table says so instead of failing the whole run.
        return None, f"presidio unusable offline: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class PresidioResult:
    """A masked text, the anonymizer's items (for restoring) and the placeholder map."""

    text: str
    items: list[Any]
    restore: dict[str, str]


class PresidioMasker:
    """Presidio's analyzer and anonymizer over regex recognizers of the default library."""

    def __init__(
        self, analyzer: Any, nlp_engine: Any, anonymizer: Any, entities: Any, operators: Any
    ) -> None:
        self.version = _distribution_version()
        recognizers = []
        skipped = 0
        for entry in DEFAULT_PATTERNS:
            needs_context = bool(entry.context_keywords or entry.context_regex)
            score = CONTEXT_ONLY_SCORE if needs_context else 1.0
            pattern = analyzer.Pattern(name=entry.name, regex=entry.regex, score=score)
            recognizer = analyzer.PatternRecognizer(
                supported_entity=entry.prefix,
                name=entry.name,
                patterns=[pattern],
                global_regex_flags=0,  # our patterns are case-sensitive, multiline-free
            )
            try:
                recognizer.analyze("probe", [entry.prefix])
            except Exception:  # noqa: BLE001 - the `regex` module's errors have no common base
                skipped += 1
                continue
            recognizers.append(recognizer)
        self.patterns = len(recognizers)
        self.skipped = skipped
        self.entities = sorted({r.supported_entities[0] for r in recognizers})
        registry = analyzer.RecognizerRegistry(recognizers=recognizers, global_regex_flags=0)
        engine = nlp_engine.NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
        self._analyzer = analyzer.AnalyzerEngine(registry=registry, nlp_engine=engine)
        self._anonymizer = anonymizer.AnonymizerEngine()
        self._deanonymizer = anonymizer.DeanonymizeEngine()
        self._deanonymizer.add_deanonymizer(_restore_operator_class(operators))
        self._operator_config: Callable[..., Any] = entities.OperatorConfig

    def mask(self, text: str) -> PresidioResult:
        """Find values with the analyzer and number them with the anonymizer."""
        found = self._analyzer.analyze(
            text=text, language="en", entities=self.entities, score_threshold=SCORE_THRESHOLD
        )
        placeholders: dict[str, str] = {}
        counters: Counter[str] = Counter()

        def numbering(prefix: str) -> Callable[[str], str]:
            def placeholder(value: str) -> str:
                if value not in placeholders:
                    counters[prefix] += 1
                    placeholders[value] = format_placeholder(prefix, counters[prefix])
                return placeholders[value]

            return placeholder

        operators = {
            entity: self._operator_config("custom", {"lambda": numbering(entity)})
            for entity in self.entities
        }
        result = self._anonymizer.anonymize(text=text, analyzer_results=found, operators=operators)
        restore = {placeholder: value for value, placeholder in placeholders.items()}
        return PresidioResult(text=result.text, items=list(result.items), restore=restore)

    def unmask(self, masked: PresidioResult) -> str:
        """Restore with the deanonymizer, at the positions the anonymizer reported."""
        config = self._operator_config(RESTORE_OPERATOR, {"restore": masked.restore})
        result = self._deanonymizer.deanonymize(
            text=masked.text, entities=masked.items, operators={"DEFAULT": config}
        )
        restored: str = result.text
        return restored


def _restore_operator_class(operators: Any) -> type:
    """A Presidio deanonymizer that swaps a placeholder for its original value."""

    def operate(self: Any, text: str | None = None, params: dict[str, Any] | None = None) -> str:
        restore: dict[str, str] = (params or {})["restore"]
        return restore.get(text or "", text or "")

    def validate(self: Any, params: dict[str, Any] | None = None) -> None:
        if not isinstance((params or {}).get("restore"), dict):
            raise ValueError("restore_placeholder needs a 'restore' dict")

    return type(
        "RestorePlaceholder",
        (operators.Operator,),
        {
            "operate": operate,
            "validate": validate,
            "operator_name": lambda self: RESTORE_OPERATOR,
            "operator_type": lambda self: operators.OperatorType.Deanonymize,
        },
    )


def _distribution_version() -> str:
    try:
        version: str = metadata.version("presidio-analyzer")
    except metadata.PackageNotFoundError:
        return ""
    return version
