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

from dataclasses import asdict, dataclass, replace
from typing import Sequence

from rdm.db import Hit, ImageStore
from rdm.decompose import Decomposition, LLMConfig, decompose
from rdm.errors import RetrievalError
from rdm.plan import ConditioningPlan
from rdm.retrieve.filter import filter_hits, uncovered_subqueries
from rdm.retrieve.modes import OVER_BUDGET, RECIPES, FilterSettings, Fusion, RetrievalSettings
from rdm.retrieve.planning import build_plan, input_plan_items


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
            uncovered = uncovered_subqueries(queries, hits)
        else:
            in_force = replace(filters, threshold=filters.absolute_for(store.encoder_name, fusion))
            kept, filtered, uncovered = filter_hits(store, queries, query_vecs, hits, in_force, budget=budget,
                                                    fusion=fusion)

    # 4. The plan.
    plan = build_plan(prompt, mode, recipe, decomposition, kept, uncovered, inputs,
                      drop_uncovered=filters.drop_uncovered and recipe.retrieval == "subquery+filter")
    return Retrieval(prompt=prompt, mode=mode, decomposition=decomposition, hits=hits, kept=kept,
                     filtered=filtered, uncovered=uncovered, plan=plan, filters=in_force)



def _pool_by_score(hits: Sequence[Hit], budget: int | None) -> tuple[tuple[Hit, ...], tuple]:
    """Plain top-k per sub-query: under a budget the best-scoring hits win, whichever sub-query."""
    if not budget or len(hits) <= budget:
        return tuple(hits), ()
    ranked = sorted(hits, key=lambda h: -h.score)
    return tuple(ranked[:budget]), tuple((h, OVER_BUDGET) for h in ranked[budget:])
