"""The embedding map's figure at a team's size: WebGL past a few thousand points, markers small and
see-through enough that a highlighted third of 20,000 points does not look like all of them."""

from __future__ import annotations

import numpy as np

from dashboard.map_figure import build_figure
from rdm.curation import MapLayout
from rdm.db import ImageRecord

TAGS = ("outdoor", "studio", "product")


def records(n: int) -> dict[int, ImageRecord]:
    return {i: ImageRecord(i, f"{i:064x}", f"img-{i}.png", "png", "animals", (TAGS[i % 3],), "", "", "", "", 96, 72,
                           "2026-01-01T00:00:00+00:00", None) for i in range(1, n + 1)}


def layout(n: int) -> MapLayout:
    return MapLayout(tuple(range(1, n + 1)), np.random.default_rng(0).normal(size=(n, 2)), "umap")


def test_a_small_map_keeps_full_markers_and_svg():
    (trace,) = build_figure(layout(244), records(244), "Category", None).data
    assert trace.type == "scatter" and trace.marker.size == 9 and trace.marker.opacity == 1


def test_at_20k_points_markers_shrink_and_a_highlight_stands_out_from_the_rest():
    figure = build_figure(layout(20_000), records(20_000), "Tag", None, highlight="outdoor")
    grey, marked = figure.data  # the rest drawn first, the highlighted tag on top
    assert {grey.type, marked.type} == {"scattergl"}
    assert marked.name == "outdoor (6666)" and grey.name == "others (13334)"
    assert marked.marker.size <= 4 and marked.marker.opacity < 0.5
    assert grey.marker.size < marked.marker.size and grey.marker.opacity < marked.marker.opacity
