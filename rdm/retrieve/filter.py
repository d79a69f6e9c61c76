"""The filter of mode ``subquery+filter``: thresholds (absolute and relative to each sub-query's best
hit), one photo per sub-query (the same image, a copy by perceptual hash, a near-duplicate by embedding),
and a reference budget spent covering every sub-query first."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rdm.db import Hit, ImageStore
from rdm.db.copies import is_copy
from rdm.decompose import SubQuery
from rdm.retrieve.modes import (ALREADY_COVERED, BELOW_ABSOLUTE, BELOW_RELATIVE, COPY_OF, NEAR_DUPLICATE, OVER_BUDGET,
                                SAME_IMAGE, FilterSettings, Fusion, RetrievalSettings)


def filter_hits(store: ImageStore, queries: Sequence[SubQuery], query_vecs: np.ndarray,
                hits: Sequence[Hit], filters: FilterSettings, *, budget: int | None = None,
                fusion: Fusion = RetrievalSettings.fusion,
                ) -> tuple[tuple[Hit, ...], tuple[tuple[Hit, str], ...], tuple[str, ...]]:
    """The filter on ``fusion``'s scores: (kept, filtered with reasons, uncovered sub-queries)."""
    threshold = filters.absolute_for(store.encoder_name, fusion)
    weight = {q.text: q.weight for q in queries}
    best = {q.text: max((h.score for h in hits if h.subquery == q.text), default=0.0) for q in queries}
    filtered: list[tuple[Hit, str]] = []

    # 1. Thresholds: absolute (a hybrid hit on its cosine or a full text match), then relative to the
    #    sub-query's own best hit.
    survivors = []
    for h in hits:
        if not fusion.passes(h.score, h.image_score, h.text_score, threshold):
            filtered.append((h, BELOW_ABSOLUTE if h.score < threshold else
                             f"{BELOW_ABSOLUTE}: image {h.image_score:.3f}, text matches {len(h.matched)} of "
                             f"{h.text_words} words"))
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
        scores, passing = _fused_scores(store, queries, query_vecs, unique, vec_of, fusion, threshold)
        kept, left = _cover(queries, scores, passing, unique, answers, filters.relative, best)
        filtered += [(h, ALREADY_COVERED) for h in left]
    else:
        kept = _coverage_first(unique, answers, weight)
    if budget and len(kept) > budget:
        filtered += [(h, OVER_BUDGET) for h in kept[budget:]]
        kept = kept[:budget]

    return tuple(kept), tuple(filtered), uncovered_subqueries(queries, survivors)


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
                  vec_of: dict[int, np.ndarray], fusion: Fusion, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Each reference's score (``fusion``'s) for every sub-query, and whether it clears the absolute
    threshold: references x sub-queries."""
    if not unique:
        return np.zeros((0, len(queries))), np.zeros((0, len(queries)), bool)
    cosines = np.stack([vec_of[h.id] for h in unique]) @ query_vecs.T
    text = (np.array(store.catalog.text_match_matrix([q.text for q in queries], [h.id for h in unique]))
            if fusion.uses_text else np.zeros_like(cosines))
    scores = np.vectorize(fusion.score)(cosines, text)
    return scores, np.vectorize(lambda s, c, t: fusion.passes(s, c, t, threshold))(scores, cosines, text)


def _cover(queries: Sequence[SubQuery], scores: np.ndarray, passing: np.ndarray, unique: Sequence[Hit],
           answers: dict[int, set[str]], relative: float,
           best: dict[str, float]) -> tuple[list[Hit], list[Hit]]:
    """Greedy set cover: each step takes the reference that adds the most weight x score over
    the sub-queries still uncovered; a photo that passes the thresholds for two sub-queries
    covers both (Cross-modal RAG's idea: choose a set, not top-k per query)."""
    if not unique:
        return [], []
    texts = [q.text for q in queries]
    passes = passing & np.array([[s >= relative * best[t] for s, t in zip(row, texts)] for row in scores]) \
        | np.array([[t in answers[h.id] for t in texts] for h in unique])
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


def uncovered_subqueries(queries: Sequence[SubQuery], found: Sequence[Hit]) -> tuple[str, ...]:
    """Sub-queries no photo in ``found`` answers: the DB cannot show them (as in the seed's exp4).
    One that merely lost its references to the budget still counts as covered."""
    answered = {h.subquery for h in found}
    return tuple(q.text for q in queries if q.text not in answered)
