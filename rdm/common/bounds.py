"""The one check every numeric setting goes through: a real number (never a bool, never NaN or
infinite), of the right kind, inside its bounds. A request that fails it is refused before any work
is done, with the setting's name and its bounds in the message, whatever front end sent it. Texts and
lists read from files a user could have edited (run.json, study.json) go through the same kind of check."""

from __future__ import annotations

import math

from rdm.errors import RDMError


def check_number(value: object, name: str, low: float, high: float, *, integer: bool = False,
                 low_open: bool = False, error: type[RDMError] = RDMError) -> float | int:
    """``value`` if it is a finite number in [low, high] (``(low, high]`` with ``low_open``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number"
        raise error(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise error(f"{name} must be a finite number, got {value!r}")
    below = value <= low if low_open else value < low
    if below or value > high:
        span = f"{'above' if low_open else 'at least'} {low:g} and at most {high:g}"
        raise error(f"{name} must be {span}, got {value!r}")
    return value


def check_text(value: object, name: str, max_chars: int, *, error: type[Exception] = RDMError) -> str:
    """``value`` if it is text of at most ``max_chars`` characters."""
    if not isinstance(value, str) or len(value) > max_chars:
        raise error(f"{name} must be text of at most {max_chars:,} characters, got {_kind(value)}")
    return value


def check_list(value: object, name: str, max_items: int, *, error: type[Exception] = RDMError) -> list:
    """``value`` if it is a list of at most ``max_items`` entries (a tampered file cannot ask for millions)."""
    if not isinstance(value, list) or len(value) > max_items:
        raise error(f"{name} must be a list of at most {max_items:,} entries, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return f"a {type(value).__name__} of {len(value):,}" if isinstance(value, (list, str)) else type(value).__name__
