"""Search: the index's top-k per query vector, restricted by the catalog's filters, as hits."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rdm.db.catalog import Catalog
from rdm.db.index import VectorIndex
from rdm.db.records import Hit
from rdm.errors import EncoderMismatch


def top_k(index: VectorIndex, catalog: Catalog, queries: np.ndarray, k: int, *, category: str | None = None,
          tag: str | None = None, contains: str | None = None, exclude: Sequence[int] = ()) -> list[list[Hit]]:
    """Top-k live images per query vector (cosine; vectors are normalised), best first, among those that
    pass the grid's filters (``contains``: caption, file name or a tag holds the text)."""
    queries = np.atleast_2d(np.asarray(queries, np.float32))
    dim = int(catalog.meta("dim"))
    if queries.shape[1] != dim:
        raise EncoderMismatch(f"query vectors have dimension {queries.shape[1]}, the DB at "
                              f"{catalog.db_file.parent} holds {dim}-d vectors from {catalog.meta('encoder')!r}")
    allowed = None
    if category or tag or contains or exclude:
        excluded = set(exclude)
        allowed = [r.id for r in catalog.records(category=category, tag=tag, text=contains) if r.id not in excluded]
        if not allowed:
            return [[] for _ in queries]
    k_eff = max(0, min(int(k), index.size))
    if k_eff == 0:
        return [[] for _ in queries]
    scores, ids = index.search(queries, k_eff, allowed)
    found = {r.id: r for r in catalog.records(ids=[int(i) for i in np.unique(ids) if i >= 0])}
    return [[Hit(int(i), float(s), found[int(i)]) for s, i in zip(srow, irow) if i >= 0 and int(i) in found]
            for srow, irow in zip(scores, ids)]
