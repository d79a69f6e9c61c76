"""The one check every numeric setting goes through: a real number (never a bool, never NaN or
infinite), of the right kind, inside its bounds. A request that fails it is refused before any work
is done, with the setting's name and its bounds in the message, whatever front end sent it."""

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
