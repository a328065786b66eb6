"""Masking rules as admins manage them: patterns, sensitive terms and allowed values."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from patterns.engine import (
    VALIDATORS,
    PatternError,
    PatternSpec,
    TermSpec,
    check_examples,
    check_prefix,
    compile_pattern,
    compile_regex,
)
from patterns.library import CATEGORIES

CATEGORY_CHOICES = list(CATEGORIES.items())
VALIDATOR_CHOICES = [
    ("public_ip", "Public IP address (not private, loopback, link-local, CGNAT, documentation)"),
    ("any_ip", "Any valid IP address"),
    ("luhn", "Passes the Luhn checksum (payment cards)"),
    ("entropy", "Random-looking (at least 16 characters, 3 bits of entropy per character)"),
    ("aws_secret", "AWS secret key shape (mixed case, high entropy; not a hex digest)"),
    (
        "bucket_name",
        "Bucket name, not code (not called, assigned to, an attribute, a file or a scheme)",
    ),
    ("customer_endpoint", 'A customer\'s endpoint, not an AWS service principal ("Service": ...)'),
    (
        "secret_not_code",
        "Secret value, not code (not a format placeholder, a function call or a variable)",
    ),
    (
        "secret_value",
        "Whole value under a secret-named key, not code, a variable, a template or a flag",
    ),
]
assert {key for key, _ in VALIDATOR_CHOICES} == set(VALIDATORS)  # noqa: S101


def split_lines(text: str) -> tuple[str, ...]:
    """Non-empty lines, with a literal \\n inside a line standing for a line break."""
    return tuple(
        line.replace("\\n", "\n") for line in (raw.strip() for raw in text.splitlines()) if line
    )


class Pattern(models.Model):
    name = models.SlugField(max_length=64, unique=True, help_text="A unique snake_case name.")
    category = models.CharField(max_length=32, choices=CATEGORY_CHOICES, default="custom")
    description = models.TextField(blank=True)
    regex = models.TextField(
        help_text="RE2 syntax (linear time): no lookarounds or backreferences. Boundaries are "
        "added by the engine: a match never continues an ASCII identifier."
    )
    placeholder_prefix = models.CharField(
        max_length=32, help_text="Upper case, e.g. AWS_EC2: values become AWS_EC2_001, ..."
    )
    priority = models.IntegerField(
        default=100, help_text="When two matches overlap, the longer wins; then the lower number."
    )
    enabled = models.BooleanField(default=True)
    trial = models.BooleanField(
        default=False,
        help_text="On trial: the rule masks nothing, but what it would have masked is counted "
        "(audit records, dashboard). Switch it off to enforce the rule.",
    )
    validator = models.CharField(max_length=32, choices=VALIDATOR_CHOICES, blank=True)
    context_keywords = models.TextField(
        blank=True,
        help_text="One keyword per line (case-insensitive). When set, a match counts only "
        "within the context window of a keyword.",
    )
    context_regex = models.TextField(
        blank=True, help_text="Or a regex (RE2) whose matches count as context."
    )
    context_window = models.PositiveIntegerField(
        default=48,
        help_text="How many characters away a keyword may be; 0: the value starts right where "
        "a keyword ends (a setting's value after its name).",
    )
    positive_examples = models.TextField(
        blank=True,
        help_text="Texts that must be masked, one per line (\\n for a line break). "
        "A bare value must be matched whole.",
    )
    negative_examples = models.TextField(
        blank=True, help_text="Texts in which this pattern must find nothing, one per line."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("priority", "name")
        # The admin's "Try the rules" page shows what the rules would mask in any pasted
        # text: it confirms a guessed sensitive term, so it is granted on purpose only.
        permissions = (("try_rules", "Can try the masking rules on pasted text"),)

    def __str__(self) -> str:
        return self.name

    def to_spec(self) -> PatternSpec:
        return PatternSpec(
            name=self.name,
            regex=self.regex,
            prefix=self.placeholder_prefix,
            priority=self.priority,
            category=self.category,
            validator=self.validator,
            context_keywords=split_lines(self.context_keywords),
            context_regex=self.context_regex.strip(),
            context_window=self.context_window,
        )

    def clean(self) -> None:
        try:
            check_prefix(self.placeholder_prefix)
        except PatternError as exc:
            raise ValidationError({"placeholder_prefix": str(exc)}) from None
        for field in ("regex", "context_regex"):
            regex = getattr(self, field).strip()
            if regex or field == "regex":
                try:
                    compile_regex(regex)
                except PatternError as exc:
                    raise ValidationError({field: str(exc)}) from None
        spec = self.to_spec()
        try:
            compile_pattern(spec)
        except PatternError as exc:
            raise ValidationError(str(exc)) from None
        problems = check_examples(
            spec, split_lines(self.positive_examples), split_lines(self.negative_examples)
        )
        if problems:
            raise ValidationError({"positive_examples": problems})


class SensitiveTerm(models.Model):
    term = models.CharField(
        max_length=200, unique=True, help_text="An exact string that is always masked."
    )
    placeholder_prefix = models.CharField(max_length=32, default="TERM")
    case_sensitive = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("term",)

    def __str__(self) -> str:
        # Not the term itself: this string lands in admin log entries and messages.
        return f"{self.placeholder_prefix} term #{self.pk}"

    def to_spec(self) -> TermSpec:
        return TermSpec(
            term=self.term, prefix=self.placeholder_prefix, case_sensitive=self.case_sensitive
        )

    def clean(self) -> None:
        if not self.term.strip():
            raise ValidationError({"term": "The term is empty."})
        try:
            check_prefix(self.placeholder_prefix)
        except PatternError as exc:
            raise ValidationError({"placeholder_prefix": str(exc)}) from None


class AllowedValue(models.Model):
    value = models.CharField(
        max_length=500, unique=True, help_text="An exact value that is never masked."
    )
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("value",)

    def __str__(self) -> str:
        return self.value
