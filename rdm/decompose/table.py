"""The sub-query table a user edits in the dashboard, to and from a ``Decomposition``.

Edited rows are untrusted input: blank rows are dropped, a row without a weight gets an equal
share, and the weights are renormalised to sum to 1 (the prior's blend requires it). Every
change is recorded in ``repairs`` so a run shows that its sub-queries were edited by hand.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterable, Mapping

from rdm.decompose import Decomposition, DecompositionError, SubQuery
from rdm.plan import normalise

TEXT, WEIGHT = "sub-query", "weight"
EDITED = "sub-queries edited by hand"


def table_rows(decomposition: Decomposition) -> list[dict]:
    return [{TEXT: q.text, WEIGHT: round(q.weight, 4)} for q in decomposition.subqueries]


def _weight(value: object, text: str) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise DecompositionError(f"the weight of {text!r} is not a number: {value!r}") from None
    if not math.isfinite(weight) or weight <= 0:
        raise DecompositionError(f"the weight of {text!r} must be above 0, got {value!r}: "
                                 "delete the row to drop the sub-query")
    return weight


def from_table(original: Decomposition, rows: Iterable[Mapping[str, object]]) -> Decomposition:
    """The edited table as a decomposition of the same prompt (``original`` when nothing changed)."""
    # 1. clean rows: blank text dropped, weights checked
    cleaned: list[tuple[str, float | None]] = []
    for row in rows:
        text = " ".join(str(row.get(TEXT) or "").split())
        if text:
            cleaned.append((text, _weight(row.get(WEIGHT), text)))
    if not cleaned:
        raise DecompositionError("the sub-query table is empty: add at least one sub-query")
    # 2. unchanged (up to the table's rounding): keep the decomposer's own numbers
    if [t for t, _ in cleaned] == [q.text for q in original.subqueries] and all(
            w is not None and abs(w - q.weight) < 1e-4 for (_, w), q in zip(cleaned, original.subqueries)):
        return original
    # 3. a missing weight gets an equal share, then everything sums to 1
    share = 1.0 / len(cleaned)
    weights = normalise([share if w is None else w for _, w in cleaned])
    subqueries = tuple(SubQuery(text, w) for (text, _), w in zip(cleaned, weights))
    repairs = tuple(r for r in original.repairs if r != EDITED) + (EDITED,)
    return replace(original, subqueries=subqueries, repairs=repairs)
