"""Review aids for curating the DB: look-alike (near-duplicate) groups and category outliers.

Both work on the DB's own (L2-normalised) vectors, so a dot product is a cosine. Duplicates and
near-duplicates among references waste conditioning weight; an image far from the rest of its
category is usually mislabelled or off-topic. Similarities are computed in row blocks, so memory
stays at ``block * n`` floats for any DB size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rdm.db import ImageStore

BLOCK_ROWS = 1024
MAX_GROUP = 12  # images per look-alike group: a page of groups stays drawable at any DB size
CANDIDATES = 32  # nearest neighbours considered per image: bounds the work and memory at any DB size
Nearest = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (scores, ids) per query; id -1: none


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
                          nearest: Nearest | None = None, max_group: int = MAX_GROUP) -> list[DuplicateGroup]:
    """Groups of look-alikes in which every pair has cosine >= ``threshold``, at most ``max_group``
    images each, largest and tightest first.

    Linking pairs transitively would chain a series of slightly different photos (or, with an encoder
    that makes everything alike, the whole DB) into one group; here a group is a clique grown around a
    seed: the seed's closest ungrouped candidates join while they are that close to every member.
    Seeds are taken in order of how many candidates they have; an image joins one group only. Each
    image's candidates are its ``CANDIDATES`` nearest neighbours at least that close (``nearest``: the
    DB's index, ``(scores, ids)`` per query as ``VectorIndex.search`` gives them; without it, exact
    blockwise), so the work and memory stay bounded at any DB size.
    """
    ids = np.asarray(ids, np.int64)
    vectors = np.asarray(vectors, np.float32)
    neighbours = _candidates(ids, vectors, threshold, nearest)
    grouped: set[int] = set()
    groups = []
    for seed in sorted(neighbours, key=lambda r: (-len(neighbours[r]), int(ids[r]))):
        if seed in grouped:
            continue
        members = [seed]
        for row in neighbours[seed]:  # closest first
            if row not in grouped and bool(np.all(vectors[members] @ vectors[row] >= threshold)):
                members.append(row)
                if len(members) == max_group:
                    break
        if len(members) < 2:
            continue
        grouped.update(members)
        sims = vectors[members] @ vectors[members].T
        pairs = sims[np.triu_indices(len(members), k=1)]
        groups.append(DuplicateGroup(ids=tuple(sorted(int(ids[r]) for r in members)),
                                     min_similarity=round(float(pairs.min()), 4),
                                     max_similarity=round(float(pairs.max()), 4)))
    return sorted(groups, key=lambda g: (-len(g.ids), -g.max_similarity, g.ids))


def _candidates(ids: np.ndarray, vectors: np.ndarray, threshold: float,
                nearest: Nearest | None) -> dict[int, list[int]]:
    """Row -> the rows of its nearest neighbours (at most ``CANDIDATES``, itself excluded) with cosine >=
    ``threshold``, closest first; rows without any are left out. Computed block by block."""
    n = len(ids)
    want = min(CANDIDATES + 1, n)  # + itself
    by_id = np.argsort(ids, kind="stable")
    found: dict[int, list[int]] = {}
    for start in range(0, n, BLOCK_ROWS):
        block = vectors[start:start + BLOCK_ROWS]
        if nearest is not None:
            scores, hits = nearest(block, want)
            scores, hits = np.asarray(scores, np.float32), np.asarray(hits, np.int64)
            at = np.clip(np.searchsorted(ids, hits, sorter=by_id), 0, n - 1)
            rows = np.where((hits >= 0) & (ids[by_id[at]] == hits), by_id[at], -1)  # an id not among ``ids``: -1
        else:
            sims = block @ vectors.T
            rows = np.argpartition(-sims, want - 1, axis=1)[:, :want]
            scores = np.take_along_axis(sims, rows, axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")
        rows, scores = np.take_along_axis(rows, order, axis=1), np.take_along_axis(scores, order, axis=1)
        own = np.arange(start, start + len(block))[:, None]
        keep = (scores >= threshold) & (rows >= 0) & (rows != own)
        for r in np.flatnonzero(keep.any(axis=1)):
            found[start + int(r)] = rows[r][keep[r]].tolist()
    return found


def alike_share(vectors: np.ndarray, threshold: float, sample: int = 400) -> float:
    """The share of random pairs of images at least ``threshold`` alike: high when the encoder makes
    everything look alike (a test encoder, or a threshold too low), and look-alike groups then say little."""
    vectors = np.asarray(vectors, np.float32)
    if len(vectors) < 2:
        return 0.0
    picked = vectors[np.random.default_rng(0).permutation(len(vectors))[:sample]]
    sims = (picked @ picked.T)[np.triu_indices(len(picked), k=1)]
    return float(np.mean(sims >= threshold))


@dataclass(frozen=True)
class LookAlikes:
    groups: tuple[DuplicateGroup, ...]
    alike_share: float  # of random pairs at least the threshold alike (``alike_share``)


def look_alikes(store: ImageStore, threshold: float) -> LookAlikes:
    """The DB's look-alike groups, each image's candidates found through its vector index (no all-pairs)."""
    ids, vectors = store.vectors()
    return LookAlikes(tuple(near_duplicate_groups(ids, vectors, threshold, nearest=store.nearest)),
                      alike_share(vectors, threshold))


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
