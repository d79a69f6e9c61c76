"""A 2-D map of the DB's embeddings (UMAP) and where a prompt's sub-queries fall on it.

UMAP's numba kernels compile on the first fit in a process (about 20 s on a small CPU); after
that a map of a thousand images takes about a second. ``warm_up`` pays the compile early, on a
toy input, so the first real map does not. ``rdm.curation.map_layouts`` saves layouts per DB index version.
"""

from __future__ import annotations

import sys
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping, Sequence

import numpy as np

MIN_UMAP_POINTS = 4  # below this UMAP has no neighbourhood graph to lay out
PLACE_NEIGHBOURS = 10  # a new point sits among this many nearest fitted ones
PLACE_CHUNK = 1024  # new points compared with the fitted ones at a time


@contextmanager
def torch_threads_kept():
    """UMAP's numba kernels reset this thread's OpenMP thread count, which torch then uses: keep torch's,
    so an encoder or generator running later in this thread computes exactly as before."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None:
            torch.set_num_threads(threads)


@dataclass(frozen=True)
class MapLayout:
    ids: tuple[int, ...]
    xy: np.ndarray  # (n, 2), row i is ids[i]
    method: str  # "umap", or "line" for a DB too small to map
    note: str = ""
    fit_version: int = -1  # the index version UMAP was fitted at (later images placed by that fit)
    encoder: str = ""  # whose embeddings were laid out (a layout of another encoder's is never reused)

    @cached_property
    def _rows(self) -> dict[int, int]:
        return {image_id: row for row, image_id in enumerate(self.ids)}

    def position(self, image_id: int) -> tuple[float, float] | None:
        row = self._rows.get(int(image_id))
        if row is None:
            return None
        return float(self.xy[row, 0]), float(self.xy[row, 1])


def fit_umap(ids: Sequence[int], vectors: np.ndarray, *, n_neighbors: int = 15,
             min_dist: float = 0.1, seed: int = 42) -> MapLayout:
    """UMAP (cosine) of the given vectors; the same input and seed give the same map."""
    ids = tuple(int(i) for i in ids)
    vectors = np.asarray(vectors, np.float32)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors: pass one vector per id")
    n = len(ids)
    # 1. too few points for a neighbourhood graph: a line keeps the page working
    if n < MIN_UMAP_POINTS:
        xy = np.stack([np.arange(n, dtype=np.float32), np.zeros(n, np.float32)], axis=1)
        return MapLayout(ids, xy, "line", f"{n} image(s): too few for UMAP (needs {MIN_UMAP_POINTS}), "
                                          "shown on a line")
    # 2. UMAP; spectral init needs a connected graph of some size, random init works for any
    import umap

    k = max(2, min(n_neighbors, n - 1))
    reducer = umap.UMAP(n_neighbors=k, min_dist=min_dist, metric="cosine", random_state=seed,
                        init="spectral" if n > 2 * k else "random", n_jobs=1)
    with warnings.catch_warnings(), torch_threads_kept():
        # "n_jobs overridden by random_state" and small-graph notices say nothing to a user
        warnings.simplefilter("ignore")
        xy = reducer.fit_transform(vectors).astype(np.float32)
    return MapLayout(ids, xy, "umap", f"UMAP of {n} images ({k} neighbours, cosine, seed {seed})")


def place_by_neighbours(known_xy: np.ndarray, known: np.ndarray, new: np.ndarray,
                        k: int = PLACE_NEIGHBOURS) -> np.ndarray:
    """Map positions for ``new`` vectors: each at the similarity-weighted centre of its ``k`` nearest ``known``
    vectors' positions (``known_xy``). It is what UMAP's own ``transform`` starts from, and it needs nothing
    but the saved layout: no fitted model is kept, so opening a DB folder never loads code."""
    known, new = np.asarray(known, np.float32), np.asarray(new, np.float32)
    k = min(k, len(known))
    xy = np.empty((len(new), 2), np.float32)
    for start in range(0, len(new), PLACE_CHUNK):  # bounded memory: a chunk of rows against every known one
        sims = new[start:start + PLACE_CHUNK] @ known.T
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(sims, nearest, axis=1), 0.0) + 1e-3
        xy[start:start + len(sims)] = np.einsum("nk,nkd->nd", weights, known_xy[nearest]) / weights.sum(1, keepdims=True)
    return xy


def place_queries(layout: MapLayout,
                  hits: Mapping[str, Sequence[tuple[int, float]]]) -> dict[str, tuple[float, float]]:
    """Each query at the score-weighted centre of its hits on the map.

    Text embeddings sit apart from image embeddings in CLIP space (the modality gap), so placing
    a text by its own vector would put every query in one corner; its hits show where it lands.
    Queries whose hits are not on the map are left out.
    """
    placed = {}
    for query, query_hits in hits.items():
        points, weights = [], []
        for image_id, score in query_hits:
            pos = layout.position(image_id)
            if pos is not None:
                points.append(pos)
                weights.append(max(float(score), 0.0) + 1e-3)
        if points:
            xy = np.average(np.asarray(points), axis=0, weights=np.asarray(weights))
            placed[query] = (float(xy[0]), float(xy[1]))
    return placed


_warm = threading.Event()


def warm_up(background: bool = True) -> None:
    """Compile UMAP's kernels on a toy input (once per process), by default in a daemon thread."""
    if _warm.is_set():
        return
    _warm.set()

    def fit() -> None:
        rng = np.random.default_rng(0)
        try:
            fit_umap(list(range(40)), rng.normal(size=(40, 8)).astype(np.float32), n_neighbors=5)
        except Exception:  # noqa: BLE001 - only a head start; the real map reports its own errors
            _warm.clear()

    if background:
        threading.Thread(target=fit, name="umap-warm-up", daemon=True).start()
    else:
        fit()
