"""The embedding map's figure at a team's size: WebGL past a few thousand points, markers small and
see-through enough that a highlighted third of 20,000 points does not look like all of them."""

from __future__ import annotations

import numpy as np

from dashboard.map_figure import GREY, build_figure, point_style
from rdm.curation import MapLayout
from rdm.db import ImageRecord

TAGS = ("outdoor", "studio", "product")


def records(n: int) -> dict[int, ImageRecord]:
    return {i: ImageRecord(i, f"{i:064x}", f"img-{i}.png", "png", "animals", (TAGS[i % 3],), "", "", "", "", 96, 72,
                           "2026-01-01T00:00:00+00:00", None) for i in range(1, n + 1)}


def layout(n: int) -> MapLayout:
    return MapLayout(tuple(range(1, n + 1)), np.random.default_rng(0).normal(size=(n, 2)), "umap")


def test_a_small_map_keeps_full_markers_and_svg():
    (trace,) = build_figure(layout(244), records(244), None).data
    assert trace.type == "scatter" and trace.marker.size == 9 and trace.marker.opacity == 1


def test_at_20k_points_markers_shrink_and_a_highlight_stands_out_from_the_rest():
    (trace,) = build_figure(layout(20_000), records(20_000), None).data
    assert trace.type == "scattergl" and trace.marker.size <= 4 and trace.marker.opacity < 0.5
    style = point_style(layout(20_000), records(20_000), "Tag", highlight="outdoor")
    assert style.legend() == [("outdoor", style.colours[style.highlight], 6666), ("others", GREY, 13334)]
    client = style.to_client()
    assert sum(code == client["highlight"] for code in client["codes"]) == 6666  # one code per point


def test_the_figure_is_the_same_whatever_the_colouring_so_the_browser_only_restyles_it():
    """Streamlit draws a changed figure anew (its WebGL context too: seconds at 20,000 points); the colouring
    travels apart, as one code per point in the figure's order."""
    recs, lay = records(300), layout(300)
    by_category = point_style(lay, recs, "Category")
    by_tag = point_style(lay, recs, "Tag")
    assert build_figure(lay, recs, None).to_json() == build_figure(lay, recs, None).to_json()
    assert by_category.labels == ("animals",) and set(by_tag.labels) == set(TAGS)
    ids = list(build_figure(lay, recs, None).data[0].customdata)
    assert [by_tag.labels[c] for c in by_tag.codes] == [recs[i].tags[0] for i in ids]
    assert by_tag.to_client()["sig"] != by_category.to_client()["sig"]
