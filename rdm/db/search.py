"""Search: the index's top-k per query vector fused with the curated-text matches of the query's words
(``rdm.db.fusion.Fusion``), restricted by the catalog's filters, as hits with their score's parts."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rdm.db.catalog import Catalog
from rdm.db.index import VectorIndex
from rdm.db.records import Hit
from rdm.db.texts import TextMatch
from rdm.errors import EncoderMismatch, StoreError
from rdm.db.fusion import Fusion


def top_k(index: VectorIndex, catalog: Catalog, queries: np.ndarray, k: int, *,
          texts: Sequence[str] | None = None, fusion: Fusion = Fusion(),
          category: str | None = None, tag: str | None = None, contains: str | None = None,
          exclude: Sequence[int] = ()) -> list[list[Hit]]:
    """Top-k live images per query (vectors normalised; ``texts``: the same queries as words; without
    them, e.g. for an anchor image, the search is by image only), best first, among those that pass
    the grid's filters (``contains``: caption, file name or a tag holds the text).

    Hybrid top-k is exact: an image with no text match scores its cosine, so it can only be in the
    fused top-k if it is in the image top-k; every other candidate is a text match."""
    queries = np.atleast_2d(np.asarray(queries, np.float32))
    dim = int(catalog.meta("dim"))
    if queries.shape[1] != dim:
        raise EncoderMismatch(f"query vectors have dimension {queries.shape[1]}, the DB at "
                              f"{catalog.db_file.parent} holds {dim}-d vectors from {catalog.meta('encoder')!r}")
    if texts is None:
        fusion = Fusion("image")
    elif len(texts) != len(queries):
        raise StoreError(f"{len(texts)} query text(s) for {len(queries)} query vector(s)")
    allowed, dropped = None, {int(i) for i in exclude}
    if category or tag or contains:
        allowed = catalog.image_ids(category=category, tag=tag, text=contains)
        if dropped:
            allowed = np.setdiff1d(allowed, np.asarray(sorted(dropped), np.int64))
        if not len(allowed):
            return [[] for _ in queries]
    # without a filter, a few excluded ids (an anchor image's own) are dropped from a top-(k + excluded),
    # which holds the top-k of the rest: no allow-list of every other id (a million-id expression for Milvus)
    dropped = dropped if allowed is None else set()
    k_eff = max(0, min(int(k), index.size))
    if k_eff == 0:
        return [[] for _ in queries]

    # 1. Candidates per query: the image top-k, and the images whose text matches.
    cosines: list[dict[int, float]] = [{} for _ in queries]
    if fusion.uses_image:
        scores, ids = index.search(queries, k_eff + len(dropped), allowed)
        cosines = [{int(i): float(s) for s, i in zip(srow, irow) if i >= 0 and int(i) not in dropped}
                   for srow, irow in zip(scores, ids)]
    matches: list[dict[int, TextMatch]] = [{} for _ in queries]
    if fusion.uses_text:
        allowed_set = set(allowed.tolist()) if allowed is not None else None
        matches = [{i: m for i, m in catalog.text_matches(t, allowed=allowed_set).items() if i not in dropped}
                   for t in texts]

    # 2. The cosine of text matches the image top-k left out, from their stored vectors.
    missing = sorted({i for c, m in zip(cosines, matches) for i in m if i not in c})
    if missing:
        vec_ids, vecs = catalog.vectors(missing, missing_ok=True)
        sims = vecs @ queries.T
        for row, image_id in enumerate(vec_ids):
            for q, (c, m) in enumerate(zip(cosines, matches)):
                if int(image_id) in m:
                    c[int(image_id)] = float(sims[row, q])

    # 3. Fused scores, the best k.
    pool = cosines if fusion.uses_image else [{i: c[i] for i in m if i in c} for c, m in zip(cosines, matches)]
    found = {r.id: r for r in catalog.records(ids=sorted({i for c in pool for i in c}))}
    results = []
    for c, m in zip(pool, matches):
        hits = [Hit(i, fusion.score(cos, m[i].score if i in m else 0.0), found[i], image_score=cos,
                    text_score=(m[i].score if i in m else 0.0) if fusion.uses_text else None,
                    matched=m[i].words if i in m else (), text_words=m[i].of if i in m else 0)
                for i, cos in c.items() if i in found]
        hits.sort(key=lambda h: (-h.score, h.id))
        results.append(hits[:k_eff])
    return results
