"""Retrieve reference photos for a prompt, filter them, and build the conditioning plan.

Modes (each also a plan recipe, see ``RECIPES``):
- ``none``: the prompt alone, no retrieval (plain Kandinsky).
- ``full``: the whole prompt as one query (the seed's baseline).
- ``subquery``: top-k per sub-query, pooled as they come.
- ``subquery+filter``: then the filter: absolute and relative cosine thresholds, near-duplicate
  removal, sub-queries left without a reference reported (and dropped from the text items), and a
  reference budget spent covering every sub-query first.
- ``exp1``..``exp4``: the seed's four experiments (DESIGN.md), item for item.

Plan weights: input product photos get fixed weights; every other item shares the remainder in
proportion to importance x similarity (summary/prompt 1 x 1, sub-query text w x 1, reference
w x cosine, keyword 1 x KeyBERT score), so they always sum to 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

from rdm.copies import is_copy
from rdm.decompose import Decomposition, LLMConfig, SubQuery, decompose
from rdm.plan import ConditioningPlan, PlanError, PlanItem, normalise
from rdm.db import Hit, ImageStore
from rdm.errors import RetrievalError
from rdm.modes import (ALREADY_COVERED, BELOW_ABSOLUTE, BELOW_RELATIVE, COPY_OF, MODES, NEAR_DUPLICATE,  # noqa: F401
                       OVER_BUDGET, PRESETS, RECIPES, SAME_IMAGE, FilterSettings, Fusion, Recipe, RetrievalSettings)


@dataclass(frozen=True)
class Retrieval:
    prompt: str
    mode: str
    decomposition: Decomposition | None
    hits: tuple[Hit, ...]  # everything retrieved; .subquery set (None in mode full)
    kept: tuple[Hit, ...]  # the final reference set (== hits when nothing filters)
    filtered: tuple[tuple[Hit, str], ...]  # (hit, why it was left out)
    uncovered: tuple[str, ...]  # sub-queries no retrieved photo answers (after the filter)
    plan: ConditioningPlan
    filters: FilterSettings | None = None  # the filter in force (threshold resolved); None: no filter

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "mode": self.mode,
            "decomposition": self.decomposition.to_dict() if self.decomposition else None,
            "filters": asdict(self.filters) if self.filters else None,
            "hits": [h.to_dict() for h in self.hits],
            "kept": [h.to_dict() for h in self.kept],
            "filtered": [{**h.to_dict(), "reason": reason} for h, reason in self.filtered],
            "uncovered": list(self.uncovered),
            "plan": self.plan.to_dict(),
        }


def plan_for(store: ImageStore, prompt: str, mode: str, *, input_images: Sequence[str] = (),
             input_weights: Sequence[float] | None = None, k: int = RetrievalSettings.k,
             budget: int | None = RetrievalSettings.budget, filters: FilterSettings = FilterSettings(),
             fusion: Fusion = RetrievalSettings.fusion, decomposer_backend: str = RetrievalSettings.decomposer,
             llm: LLMConfig | None = None, decomposition: Decomposition | None = None) -> Retrieval:
    """Retrieve references for ``prompt`` in ``mode`` (a mode or a preset) and build its plan.

    ``decomposition`` replaces the decomposer (e.g. a sub-query table the user edited);
    ``budget`` caps the number of references in the final set (and, for the offline decomposer, the
    number of sub-queries); ``fusion`` says how image and text scores make a hit's score.
    """
    # 1. Check the request.
    prompt = " ".join(prompt.split())
    if not prompt:
        raise RetrievalError("the prompt is empty: describe the image to generate")
    if mode not in RECIPES:
        raise RetrievalError(f"unknown mode {mode!r}: use one of {', '.join(RECIPES)}")
    RetrievalSettings(k=k, budget=budget)  # the same checks as a run request's
    recipe = RECIPES[mode]
    inputs = input_plan_items(input_images, input_weights, recipe.input_weights)

    # 2. Decompose (modes that use sub-queries or keywords).
    needs_decomposition = recipe.retrieval.startswith("subquery") or "keywords" in recipe.texts
    if decomposition is None and needs_decomposition:
        decomposition = decompose(prompt, recipe.decomposer or decomposer_backend, llm=llm, budget=budget)

    # 3. Retrieve and select the reference set.
    in_force = None
    if recipe.retrieval == "none":
        hits, kept, filtered, uncovered = (), (), (), ()
    elif recipe.retrieval == "full":
        hits = tuple(store.search(prompt, max(k, budget or 0), fusion=fusion))
        kept = hits[:budget] if budget else hits
        filtered = tuple((h, OVER_BUDGET) for h in hits[len(kept):])
        uncovered = ()
    else:
        queries = decomposition.subqueries
        query_vecs = store.encoder.encode_texts([q.text for q in queries])
        texts = [q.text for q in queries]
        hits = tuple(h for q, row in zip(queries, store.search_vectors(query_vecs, k, texts=texts, fusion=fusion))
                     for h in (replace(hit, subquery=q.text) for hit in row))
        if recipe.retrieval == "subquery":
            kept, filtered = _pool_by_score(hits, budget)
            uncovered = _uncovered(queries, hits)
        else:
            in_force = replace(filters, threshold=filters.absolute_for(store.encoder_name, fusion))
            kept, filtered, uncovered = filter_hits(store, queries, query_vecs, hits, in_force, budget=budget,
                                                    fusion=fusion)

    # 4. The plan.
    plan = build_plan(prompt, mode, recipe, decomposition, kept, uncovered, inputs,
                      drop_uncovered=filters.drop_uncovered and recipe.retrieval == "subquery+filter")
    return Retrieval(prompt=prompt, mode=mode, decomposition=decomposition, hits=hits, kept=kept,
                     filtered=filtered, uncovered=uncovered, plan=plan, filters=in_force)


# --- selection ---

def _pool_by_score(hits: Sequence[Hit], budget: int | None) -> tuple[tuple[Hit, ...], tuple]:
    """Plain top-k per sub-query: under a budget the best-scoring hits win, whichever sub-query."""
    if not budget or len(hits) <= budget:
        return tuple(hits), ()
    ranked = sorted(hits, key=lambda h: -h.score)
    return tuple(ranked[:budget]), tuple((h, OVER_BUDGET) for h in ranked[budget:])


def filter_hits(store: ImageStore, queries: Sequence[SubQuery], query_vecs: np.ndarray,
                hits: Sequence[Hit], filters: FilterSettings, *, budget: int | None = None,
                fusion: Fusion = RetrievalSettings.fusion,
                ) -> tuple[tuple[Hit, ...], tuple[tuple[Hit, str], ...], tuple[str, ...]]:
    """The filter on ``fusion``'s scores: (kept, filtered with reasons, uncovered sub-queries)."""
    threshold = filters.absolute_for(store.encoder_name, fusion)
    weight = {q.text: q.weight for q in queries}
    best = {q.text: max((h.score for h in hits if h.subquery == q.text), default=0.0) for q in queries}
    filtered: list[tuple[Hit, str]] = []

    # 1. Thresholds: absolute, then relative to the sub-query's own best hit.
    survivors = []
    for h in hits:
        if h.score < threshold:
            filtered.append((h, BELOW_ABSOLUTE))
        elif h.score < filters.relative * best[h.subquery]:
            filtered.append((h, BELOW_RELATIVE))
        else:
            survivors.append(h)

    # 2. The same photo for two sub-queries, a copy of it (perceptual hash), and a near-duplicate
    #    (embedding): keep the one that weighs most (weight x score); the kept one then also answers
    #    the dropped one's sub-query.
    survivors.sort(key=lambda h: -weight[h.subquery] * h.score)
    answers: dict[int, set[str]] = {}  # kept image id -> sub-queries it answers
    unique: list[Hit] = []
    ids = sorted({h.id for h in survivors})
    vec_of = dict(zip(ids, store.vectors(ids)[1])) if ids else {}
    phash = {i: h for i, (h, _) in store.catalog.hashes(ids).items()} if ids else {}
    for h in survivors:
        same = next((u for u in unique if u.id == h.id), None)
        copy = same or next((u for u in unique if u.id in phash and h.id in phash
                             and is_copy(phash[u.id], phash[h.id])), None)
        twin = copy or next((u for u in unique if float(vec_of[u.id] @ vec_of[h.id]) > filters.dedupe), None)
        if twin is None:
            unique.append(h)
            answers[h.id] = {h.subquery}
        else:
            answers[twin.id].add(h.subquery)
            filtered.append((h, f"{SAME_IMAGE} '{twin.subquery}'" if same else
                             f"{COPY_OF} #{twin.id}" if copy else f"{NEAR_DUPLICATE} #{twin.id}"))

    # 3. Spend the budget covering every sub-query first.
    if filters.coverage_select:
        scores = _fused_scores(store, queries, query_vecs, unique, vec_of, fusion)
        kept, left = _cover(queries, scores, unique, answers, threshold, filters.relative, best)
        filtered += [(h, ALREADY_COVERED) for h in left]
    else:
        kept = _coverage_first(unique, answers, weight)
    if budget and len(kept) > budget:
        filtered += [(h, OVER_BUDGET) for h in kept[budget:]]
        kept = kept[:budget]

    return tuple(kept), tuple(filtered), _uncovered(queries, survivors)


def _coverage_first(unique: Sequence[Hit], answers: dict[int, set[str]], weight: dict[str, float]) -> list[Hit]:
    """Order references so a budget cut keeps one per sub-query before a second for any:
    first the best reference of each sub-query not yet answered (heaviest sub-query first),
    then the rest by weight x score."""
    first, covered = [], set()
    for h in unique:  # already sorted by weight x score
        if not answers[h.id] <= covered:
            first.append(h)
            covered |= answers[h.id]
    taken = {id(h) for h in first}
    return first + [h for h in unique if id(h) not in taken]


def _fused_scores(store: ImageStore, queries: Sequence[SubQuery], query_vecs: np.ndarray, unique: Sequence[Hit],
                  vec_of: dict[int, np.ndarray], fusion: Fusion) -> np.ndarray:
    """Each reference's score (``fusion``'s) for every sub-query: references x sub-queries."""
    if not unique:
        return np.zeros((0, len(queries)))
    cosines = np.stack([vec_of[h.id] for h in unique]) @ query_vecs.T
    if not fusion.uses_text:
        return cosines
    text = np.array(store.catalog.text_match_matrix([q.text for q in queries], [h.id for h in unique]))
    return np.vectorize(fusion.score)(cosines, text)


def _cover(queries: Sequence[SubQuery], scores: np.ndarray, unique: Sequence[Hit],
           answers: dict[int, set[str]], threshold: float, relative: float,
           best: dict[str, float]) -> tuple[list[Hit], list[Hit]]:
    """Greedy set cover: each step takes the reference that adds the most weight x score over
    the sub-queries still uncovered; a photo that passes the thresholds for two sub-queries
    covers both (Cross-modal RAG's idea: choose a set, not top-k per query)."""
    if not unique:
        return [], []
    texts = [q.text for q in queries]
    passes = np.array([[s >= threshold and s >= relative * best[t] for s, t in zip(row, texts)]
                       for row in scores]) | np.array([[t in answers[h.id] for t in texts] for h in unique])
    gain_weights = np.array([q.weight for q in queries])
    chosen, open_ = [], np.ones(len(texts), bool)
    while open_.any():
        gains = ((passes & open_) * scores * gain_weights).sum(axis=1)
        gains[chosen] = -1.0
        i = int(np.argmax(gains))
        if gains[i] <= 0:
            break
        chosen.append(i)
        open_ &= ~passes[i]
    return [unique[i] for i in chosen], [h for j, h in enumerate(unique) if j not in chosen]


def _uncovered(queries: Sequence[SubQuery], found: Sequence[Hit]) -> tuple[str, ...]:
    """Sub-queries no photo in ``found`` answers: the DB cannot show them (as in the seed's exp4).
    One that merely lost its references to the budget still counts as covered."""
    answered = {h.subquery for h in found}
    return tuple(q.text for q in queries if q.text not in answered)


# --- the plan ---

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

