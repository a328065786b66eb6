"""Typed readers for settings from environment variables; an empty variable counts as unset."""

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _read(name: str) -> str | None:
    """Return the variable's value without surrounding whitespace, or None if unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None


def env_str(name: str, default: str) -> str:
    """Return the variable as a string, or the default."""
    value = _read(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    """Return the variable as a bool (true/false, 1/0, yes/no, on/off), or the default."""
    value = _read(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of true/false, 1/0, yes/no, on/off; got {value!r}"
    )


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    """Return the variable as an int not below minimum, or the default."""
    value = _read(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {number}")
    return number


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    """Return the variable as a finite float not below minimum, or the default."""
    value = _read(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name} must be a finite number; got {value!r}")
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {number}")
    return number


def env_list(name: str, default: Sequence[str]) -> list[str]:
    """Return the comma-separated variable as a list of non-empty items, or the default."""
    value = _read(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_secret(name: str, *, formerly: str | None = None) -> str | None:
    """Return NAME, else the stripped contents of the file named by NAME_FILE, else None.

    formerly: the variable's deprecated name, read the same way (with a warning) when NAME is
    unset. Both set is refused: one of two secrets would be silently ignored.
    """
    value = _secret(name)
    if formerly is None:
        return value
    former = _secret(formerly)
    if former is None:
        return value
    if value is not None:
        raise ImproperlyConfigured(
            f"{_given_as(name)} and {_given_as(formerly)} are both set: {formerly} is the "
            f"former name of {name}; keep {name} (or {name}_FILE) only"
        )
    logger.warning("%s is deprecated: set %s (or %s_FILE) instead", _given_as(formerly), name, name)
    return former


def _given_as(name: str) -> str:
    """NAME when it is set, else NAME_FILE: the variable a secret was read from."""
    return name if _read(name) is not None else f"{name}_FILE"


def _secret(name: str) -> str | None:
    value = _read(name)
    if value is not None:
        return value
    file_variable = f"{name}_FILE"
    path = _read(file_variable)
    if path is None:
        return None
    # The messages name the file but never show its contents.
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{file_variable}: cannot read {path}: {exc}") from exc
    if not secret:
        raise ImproperlyConfigured(f"{file_variable}: {path} is empty")
    return secret
