"""The conditioning plan of one mode: which texts and images condition the prior, with which weights.

Input product photos get fixed weights; every other item shares the remainder in proportion to
importance x similarity (summary/prompt 1 x 1, sub-query text w x 1, reference w x cosine, keyword
1 x KeyBERT score), so they always sum to 1.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from rdm.db import Hit
from rdm.decompose import Decomposition
from rdm.errors import RetrievalError
from rdm.plan import ConditioningPlan, PlanError, PlanItem, normalise
from rdm.retrieve.modes import Recipe


def input_plan_items(paths: Sequence[str], weights: Sequence[float] | None,
                     defaults: Sequence[float]) -> tuple[PlanItem, ...]:
    """The advertiser's photos with fixed weights: the given ones, else the recipe's defaults
    (more photos than defaults share the defaults' total equally)."""
    paths = [str(p) for p in paths]
    if not paths:
        if weights:
            raise RetrievalError("input weights were given without input images")
        return ()
    if weights is None:
        weights = (list(defaults[: len(paths)]) if len(paths) <= len(defaults)
                   else [sum(defaults) / len(paths)] * len(paths))
    weights = [float(w) for w in weights]
    if len(weights) != len(paths):
        raise RetrievalError(f"{len(paths)} input image(s) but {len(weights)} input weight(s): "
                             "give one weight per image")
    if not all(math.isfinite(w) and w > 0 for w in weights) or math.fsum(weights) >= 1.0:
        raise RetrievalError(f"input image weights {weights} must be positive and sum to less than 1, "
                             "leaving a share for the prompt")
    return tuple(PlanItem(kind="image", weight=w, source="input", path=p) for p, w in zip(paths, weights))


def build_plan(prompt: str, mode: str, recipe: Recipe, decomposition: Decomposition | None,
               kept: Sequence[Hit], uncovered: Sequence[str], inputs: Sequence[PlanItem], *,
               drop_uncovered: bool) -> ConditioningPlan:
    """Items in prior order: texts, references, input photos; weights sum to 1."""
    notes = [recipe.note] if recipe.note else []
    weight = {q.text: q.weight for q in decomposition.subqueries} if decomposition else {}

    # 1. Text items and references with their shares (importance x similarity).
    shared: list[tuple[PlanItem, float]] = []
    for kind in recipe.texts:
        if kind == "prompt":
            shared.append((PlanItem(kind="text", weight=1.0, source="prompt", text=prompt), 1.0))
        elif kind == "summary":
            shared.append((PlanItem(kind="text", weight=1.0, source="summary", text=decomposition.summary), 1.0))
        elif kind == "keywords":
            for q in decomposition.subqueries:
                score = q.score if q.score is not None else q.weight
                shared.append((PlanItem(kind="text", weight=1.0, source="keyword", text=q.text, score=score), score))
        elif kind == "subqueries":
            for q in decomposition.subqueries:
                if drop_uncovered and q.text in uncovered:
                    continue
                shared.append((PlanItem(kind="text", weight=1.0, source="subquery", text=q.text), q.weight))
    if drop_uncovered and uncovered:
        notes.append("dropped as not covered by any reference: " + "; ".join(uncovered))
    if recipe.references:
        for h in kept:
            importance = weight.get(h.subquery, 1.0)
            shared.append((PlanItem(kind="image", weight=1.0, source="reference", image_id=h.id,
                                    subquery=h.subquery, score=round(float(h.score), 6)),
                           importance * max(float(h.score), 1e-6)))

    # 2. Input photos keep their fixed weights; the rest share what is left.
    remainder = 1.0 - math.fsum(i.weight for i in inputs)
    try:
        weights = normalise([s for _, s in shared], total=remainder)
    except PlanError as exc:
        raise RetrievalError(f"cannot weight the plan for {mode!r}: {exc}") from exc
    items = [replace(item, weight=w) for (item, _), w in zip(shared, weights)] + list(inputs)
    if inputs:
        items[-1] = replace(items[-1], weight=1.0 - math.fsum(i.weight for i in items[:-1]))
    return ConditioningPlan(prompt=prompt, items=tuple(items), mode=mode, notes=tuple(notes))
