"""Review aids for curating the DB: near-duplicate groups and category outliers.

Both work on the DB's own (L2-normalised) vectors, so a dot product is a cosine. Duplicates and
near-duplicates among references waste conditioning weight; an image far from the rest of its
category is usually mislabelled or off-topic. Similarities are computed in row blocks, so memory
stays at ``block * n`` floats for any DB size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

BLOCK_ROWS = 1024


@dataclass(frozen=True)
class DuplicateGroup:
    ids: tuple[int, ...]  # ascending; the oldest image first
    min_similarity: float  # the loosest pair inside the group
    max_similarity: float  # the closest pair


@dataclass(frozen=True)
class Outlier:
    id: int
    category: str
    mean_similarity: float  # mean cosine to the other images of its category
    category_mean: float  # the same, averaged over the whole category: what "typical" looks like
    margin: float = 0.0  # mean_similarity minus its mean cosine to the category it is most like besides
    closer_to: str | None = None  # that other category, when the image is more like it than its own


def near_duplicate_groups(ids: Sequence[int], vectors: np.ndarray, threshold: float = 0.95, *,
                          within: Callable[[np.ndarray, float], list[np.ndarray]] | None = None
                          ) -> list[DuplicateGroup]:
    """Groups of near-duplicates, largest and tightest first.

    Each group is a leader and every not-yet-grouped image with cosine >= ``threshold`` to it;
    leaders are taken in order of how many near-duplicates they have. Unlike linking pairs
    transitively, this never chains a series of slightly different photos into one long group.
    ``within(query_vectors, threshold)`` (the DB's vector index: a range search, sub-quadratic for an
    IVF index) gives each query's ids at least that close; without it every pair is compared.
    """
    ids = np.asarray(ids, np.int64)
    vectors = np.asarray(vectors, np.float32)
    n = len(ids)
    row_of = {int(i): r for r, i in enumerate(ids)}
    # 1. each image's near-duplicates (itself excluded), block by block
    neighbours: dict[int, np.ndarray] = {}
    for start in range(0, n, BLOCK_ROWS):
        block = vectors[start:start + BLOCK_ROWS]
        if within is not None:
            rows = [np.asarray([row_of[int(i)] for i in found if int(i) in row_of], np.int64)
                    for found in within(block, threshold)]
        else:
            rows = [np.flatnonzero(row >= threshold) for row in block @ vectors.T]
        for r, close in enumerate(rows):
            close = close[close != start + r]
            if len(close):
                neighbours[start + r] = close
    # 2. leaders with the most near-duplicates first; each image joins one group only
    grouped: set[int] = set()
    groups = []
    for leader in sorted(neighbours, key=lambda i: (-len(neighbours[i]), int(ids[i]))):
        if leader in grouped:
            continue
        rows = [leader] + [int(j) for j in neighbours[leader] if int(j) not in grouped]
        if len(rows) < 2:
            continue
        grouped.update(rows)
        sims = vectors[rows] @ vectors[rows].T
        pairs = sims[np.triu_indices(len(rows), k=1)]
        groups.append(DuplicateGroup(ids=tuple(sorted(int(ids[r]) for r in rows)),
                                     min_similarity=round(float(pairs.min()), 4),
                                     max_similarity=round(float(pairs.max()), 4)))
    return sorted(groups, key=lambda g: (-len(g.ids), -g.max_similarity, g.ids))


def category_outliers(ids: Sequence[int], vectors: np.ndarray, categories: Sequence[str], *,
                      limit: int = 24, min_category_size: int = 3) -> list[Outlier]:
    """The ``limit`` images that look least like their category compared with another one.

    An image's margin is its mean cosine to the rest of its category minus its mean cosine to the
    most alike other category (a silhouette computed on category sums, O(images x categories)). A photo
    that is merely unusual in its category (the one dog among the animals) still sits nearer its own
    category than any other, so it ranks below a mislabelled one (a hammer among the animals).
    Categories with fewer than ``min_category_size`` images are skipped: with one or two neighbours
    "far from the category" means nothing. Uncategorised images form their own group.
    """
    ids = np.asarray(ids, np.int64)
    vectors = np.asarray(vectors, np.float32)
    labels = np.asarray(list(categories), dtype=object)
    if len(labels) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(labels)} categories: pass one category per image")
    judged = [c for c in sorted(set(labels.tolist())) if np.count_nonzero(labels == c) >= max(2, min_category_size)]
    if not judged:
        return []
    sums = np.stack([vectors[labels == c].sum(axis=0) for c in judged])  # categories x dim
    sizes = np.array([np.count_nonzero(labels == c) for c in judged], np.float32)
    found: list[Outlier] = []
    for k, category in enumerate(judged):
        rows = np.flatnonzero(labels == category)
        members = vectors[rows]
        # mean cosine to the others = (dot with the sum of all members - self-similarity) / (m - 1)
        self_sims = np.einsum("ij,ij->i", members, members)
        means = (members @ sums[k] - self_sims) / (sizes[k] - 1)
        elsewhere = members @ sums.T / sizes  # mean cosine to every category
        elsewhere[:, k] = -np.inf
        nearest = elsewhere.argmax(axis=1) if len(judged) > 1 else np.zeros(len(rows), int)
        other = elsewhere[np.arange(len(rows)), nearest] if len(judged) > 1 else np.full(len(rows), -1.0)
        category_mean = float(means.mean())
        found += [Outlier(int(ids[r]), str(category), round(float(s), 4), round(category_mean, 4),
                          margin=round(float(s - o), 4), closer_to=str(judged[n]) if s < o else None)
                  for r, s, o, n in zip(rows, means, other, nearest)]
    found.sort(key=lambda o: (o.margin, o.mean_similarity, o.id))
    return found[:max(0, limit)]
