"""Review aids for curating the DB: near-duplicate groups and category outliers.

Both work on the DB's own (L2-normalised) vectors, so a dot product is a cosine. Duplicates and
near-duplicates among references waste conditioning weight; an image far from the rest of its
category is usually mislabelled or off-topic. Similarities are computed in row blocks, so memory
stays at ``block * n`` floats for any DB size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BLOCK_ROWS = 1024


@dataclass(frozen=True)
class DuplicateGroup:
    ids: tuple[int, ...]  # ascending; the oldest image first
    min_similarity: float  # the loosest pair inside the group (groups are chained pairs)
    max_similarity: float  # the closest pair


@dataclass(frozen=True)
class Outlier:
    id: int
    category: str
    mean_similarity: float  # mean cosine to the other images of its category
    category_mean: float  # the same, averaged over the whole category: what "typical" looks like


def near_duplicate_groups(ids: Sequence[int], vectors: np.ndarray,
                          threshold: float = 0.95) -> list[DuplicateGroup]:
    """Groups of images linked by pairs with cosine >= ``threshold``, largest and tightest first."""
    ids = np.asarray(ids, np.int64)
    vectors = np.asarray(vectors, np.float32)
    n = len(ids)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # 1. link every pair above the threshold (upper triangle only), block by block
    for start in range(0, n, BLOCK_ROWS):
        sims = vectors[start:start + BLOCK_ROWS] @ vectors.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist()):
            a, b = start + r, c
            if a < b:
                parent[find(a)] = find(b)
    # 2. collect the groups and describe how tight each one is
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    groups = []
    for rows in members.values():
        if len(rows) < 2:
            continue
        sims = vectors[rows] @ vectors[rows].T
        pairs = sims[np.triu_indices(len(rows), k=1)]
        order = np.argsort(ids[rows])
        groups.append(DuplicateGroup(ids=tuple(int(ids[rows][k]) for k in order),
                                     min_similarity=round(float(pairs.min()), 4),
                                     max_similarity=round(float(pairs.max()), 4)))
    return sorted(groups, key=lambda g: (-len(g.ids), -g.max_similarity, g.ids))


def category_outliers(ids: Sequence[int], vectors: np.ndarray, categories: Sequence[str], *,
                      limit: int = 24, min_category_size: int = 3) -> list[Outlier]:
    """The ``limit`` images with the lowest mean similarity to the rest of their category.

    Categories with fewer than ``min_category_size`` images are skipped: with one or two
    neighbours "far from the category" means nothing. Uncategorised images form their own group.
    """
    ids = np.asarray(ids, np.int64)
    vectors = np.asarray(vectors, np.float32)
    labels = np.asarray(list(categories), dtype=object)
    if len(labels) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(labels)} categories: pass one category per image")
    found: list[Outlier] = []
    for category in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == category)
        m = len(rows)
        if m < max(2, min_category_size):
            continue
        members = vectors[rows]
        centroid_sum = members.sum(axis=0)
        # mean cosine to the others = (dot with the sum of all members - self-similarity) / (m - 1)
        self_sims = np.einsum("ij,ij->i", members, members)
        means = (members @ centroid_sum - self_sims) / (m - 1)
        category_mean = float(means.mean())
        found += [Outlier(int(ids[r]), str(category), round(float(s), 4), round(category_mean, 4))
                  for r, s in zip(rows, means)]
    found.sort(key=lambda o: (o.mean_similarity, o.id))
    return found[:max(0, limit)]
