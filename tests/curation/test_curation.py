"""Near-duplicate groups and category outliers, on vectors whose answer is known by construction."""

import numpy as np
import pytest

from rdm.curation.review import alike_share, category_outliers, near_duplicate_groups
from rdm.encoders import l2_normalise


def _vectors(rows):
    return l2_normalise(np.asarray(rows, np.float32))


def test_near_duplicates_are_grouped_and_distinct_images_are_not():
    base = np.eye(6, dtype=np.float32)
    vecs = _vectors([base[0], base[0] + 0.01 * base[1], base[2], base[3], base[3] + 0.02 * base[4], base[5]])
    groups = near_duplicate_groups([10, 11, 12, 13, 14, 15], vecs, threshold=0.98)
    assert [g.ids for g in groups] == [(10, 11), (13, 14)]
    assert all(0.98 <= g.min_similarity <= g.max_similarity <= 1.0 for g in groups)


def test_a_series_of_slightly_different_photos_is_not_chained_into_one_group():
    angles = [0.0, 0.15, 0.30, 0.45, 0.60]  # each ~0.989 to its neighbours, ~0.955 two steps apart
    vecs = _vectors([[np.cos(a), np.sin(a), 0] for a in angles] + [[0, 0, 1]])
    groups = near_duplicate_groups([10, 11, 12, 13, 14, 99], vecs, threshold=0.98)
    assert [g.ids for g in groups] == [(10, 11), (12, 13)]  # #10 and #12 are 0.955 apart: not one group
    assert all(g.min_similarity >= 0.98 for g in groups)


def test_look_alike_groups_hold_for_every_pair_and_are_capped_when_everything_is_alike():
    rng = np.random.default_rng(1)
    alike = _vectors(np.ones((300, 8)) + rng.normal(0, 0.01, (300, 8)))  # an encoder that sees one thing
    groups = near_duplicate_groups(range(300), alike, threshold=0.95, max_group=12)
    assert groups and max(len(g.ids) for g in groups) == 12 and len(groups) >= 300 // 12
    assert len({i for g in groups for i in g.ids}) == sum(len(g.ids) for g in groups)  # one group per image
    for g in groups[:5]:
        sims = alike[list(g.ids)] @ alike[list(g.ids)].T
        assert sims.min() >= 0.95
    assert alike_share(alike, 0.95) == 1.0
    assert alike_share(_vectors(rng.normal(0, 1, (300, 8))), 0.95) < 0.05


def test_blockwise_search_finds_pairs_across_blocks(monkeypatch):
    import rdm.curation.review as curation

    monkeypatch.setattr(curation, "BLOCK_ROWS", 2)
    vecs = _vectors(np.eye(5)[[0, 1, 2, 3, 0]])  # image 0 and 4 are identical, in different blocks
    assert [g.ids for g in near_duplicate_groups(range(5), vecs, threshold=0.99)] == [(0, 4)]


def test_outlier_is_the_image_least_like_its_category():
    dogs = [[1, 0.05 * i, 0, 0] for i in range(4)] + [[0, 0, 1, 0]]  # the last "dog" is a sofa
    sofas = [[0, 0, 1, 0.05 * i] for i in range(3)]
    ids = list(range(8))
    cats = ["dogs"] * 5 + ["sofas"] * 3
    outliers = category_outliers(ids, _vectors(dogs + sofas), cats, limit=2)
    assert outliers[0].id == 4 and outliers[0].category == "dogs"
    assert outliers[0].mean_similarity < outliers[0].category_mean
    assert len(outliers) == 2


def test_a_lone_odd_member_ranks_below_a_mislabelled_one():
    # animals: four dogs, one lone bird (unusual, still an animal); a hammer labelled as an animal
    animals = [[1, 0.05 * i, 0, 0.3] for i in range(4)] + [[0.3, 1, 0, 0.3], [0, 0, 1, 0.05]]
    objects = [[0, 0, 1, 0.1 * i] for i in range(3)]
    ids = list(range(9))
    cats = ["animals"] * 6 + ["objects"] * 3
    ranked = category_outliers(ids, _vectors(animals + objects), cats, limit=9)
    assert ranked[0].id == 5 and ranked[0].closer_to == "objects" and ranked[0].margin < 0
    bird = next(o for o in ranked if o.id == 4)
    assert bird.closer_to is None and bird.margin > 0
    # the lone bird has the lowest mean similarity of the genuine animals, yet ranks after the hammer
    assert bird.mean_similarity < min(o.mean_similarity for o in ranked if o.id < 4)


def test_small_categories_are_not_judged():
    vecs = _vectors(np.eye(4))
    assert category_outliers([1, 2, 3, 4], vecs, ["a", "a", "b", "b"], min_category_size=3) == []
    with pytest.raises(ValueError, match="one category per image"):
        category_outliers([1, 2], vecs[:2], ["a"])
