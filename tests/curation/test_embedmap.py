"""The embedding map: UMAP keeps neighbours together, tiny DBs still get a map, queries land on hits."""

import numpy as np
import pytest

from rdm.curation.embedmap import MapLayout, place_queries, fit_umap


def test_umap_keeps_clusters_apart_and_is_reproducible():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(2, 16)) * 5
    vecs = np.concatenate([c + rng.normal(size=(10, 16)) * 0.1 for c in centres]).astype(np.float32)
    ids = list(range(100, 120))
    layout = fit_umap(ids, vecs, n_neighbors=5)
    assert layout.method == "umap" and layout.xy.shape == (20, 2)
    a, b = layout.xy[:10], layout.xy[10:]
    within = max(np.linalg.norm(a - a.mean(0), axis=1).max(), np.linalg.norm(b - b.mean(0), axis=1).max())
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > 2 * within
    np.testing.assert_allclose(fit_umap(ids, vecs, n_neighbors=5).xy, layout.xy)
    assert layout.position(110) == pytest.approx(tuple(layout.xy[10]))
    assert layout.position(999) is None


def test_too_few_images_get_a_line_with_a_note():
    layout = fit_umap([5, 6], np.eye(2, dtype=np.float32))
    assert layout.method == "line" and "too few" in layout.note
    assert layout.xy.shape == (2, 2)
    with pytest.raises(ValueError, match="one vector per id"):
        fit_umap([1, 2, 3], np.eye(2, dtype=np.float32))


def test_queries_are_placed_at_the_score_weighted_centre_of_their_hits():
    layout = MapLayout((1, 2, 3), np.array([[0, 0], [10, 0], [0, 10]], np.float32), "umap")
    placed = place_queries(layout, {"a dog": [(1, 0.9), (2, 0.9)], "a sofa": [(3, 0.5)],
                                    "lost": [(42, 0.7)]})
    assert placed["a dog"] == pytest.approx((5.0, 0.0), abs=0.01)
    assert placed["a sofa"] == pytest.approx((0.0, 10.0))
    assert "lost" not in placed
