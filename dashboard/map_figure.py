"""The embedding map's Plotly figure (every image a point, a sub-query overlay) and how its points are
coloured: by category or tag, one of them highlighted (``PointStyle``, applied in the browser by
dashboard/map_client.py, so the figure itself does not change with the colouring)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from rdm.db import ImageRecord
from rdm.curation import MapLayout, place_queries
from rdm.retrieve import Retrieval

MAP_META = "rdm-embedding-map"  # lets the map's script (dashboard/map_client.py) find this chart
MAX_LEGEND = 12
WEBGL_FROM = 3000  # points: past this Plotly draws with WebGL (SVG slows the browser at tens of thousands)
GREY = "#c9ccd3"  # the images a highlight leaves out

def label_for(record: ImageRecord, colour_by: str, top_tags: set[str]) -> str:
    if colour_by == "Category":
        return record.category or "(none)"
    common = [t for t in record.tags if t in top_tags]
    return common[0] if common else ("other tags" if record.tags else "untagged")


def highlight_choices(records: dict[int, ImageRecord], colour_by: str) -> list[str]:
    """Every category (or every tag, not only the legend's top ones), the most common first."""
    counts = Counter(r.category or "(none)" for r in records.values()) if colour_by == "Category" else \
        Counter(t for r in records.values() for t in r.tags)
    return [value for value, _ in counts.most_common()]


def _has(record: ImageRecord, colour_by: str, value: str) -> bool:
    return (record.category or "(none)") == value if colour_by == "Category" else value in record.tags


@dataclass(frozen=True)
class PointStyle:
    """How the map's points are coloured: a label code per point (in the figure's point order), each label's
    name, colour and count (the legend, most images first) and which code is highlighted (-1: none)."""
    codes: tuple[int, ...]
    labels: tuple[str, ...]
    colours: tuple[str, ...]
    counts: tuple[int, ...]
    highlight: int
    size: float
    opacity: float

    def to_client(self) -> dict:
        """What the browser needs to restyle the points (dashboard/map_client.py)."""
        return {"codes": list(self.codes), "colours": list(self.colours), "highlight": self.highlight,
                "size": self.size, "opacity": self.opacity,
                "sig": f"{hash((self.codes, self.colours, self.highlight, self.size, self.opacity)):x}"}

    def legend(self) -> list[tuple[str, str, int]]:
        """(label, colour, images) for every label, the highlighted one or the largest first."""
        entries = list(zip(self.labels, self.colours, self.counts))
        return sorted(entries, key=lambda e: (e[0] == "others", -e[2], e[0]))


def shown_rows(layout: MapLayout, records: dict[int, ImageRecord]) -> np.ndarray:
    """The layout's rows drawn as points: the live images (in ``records``), in layout order."""
    return np.array([r for r, image_id in enumerate(layout.ids) if image_id in records], np.int64)


def point_style(layout: MapLayout, records: dict[int, ImageRecord], colour_by: str,
                highlight: str | None = None) -> PointStyle:
    """Points coloured by category or by their most common tag (the 12 commonest have a colour of their
    own); ``highlight`` (a category or any tag) draws its images in colour and larger, every other one grey
    and fainter."""
    shown = [records[layout.ids[r]] for r in shown_rows(layout, records)]
    if highlight:
        labels = [highlight if _has(rec, colour_by, highlight) else "others" for rec in shown]
    else:
        tag_counts = Counter(t for rec in shown for t in rec.tags)
        top_tags = {t for t, _ in tag_counts.most_common(MAX_LEGEND)}
        labels = [label_for(rec, colour_by, top_tags) for rec in shown]
    counts = Counter(labels)
    ordered = sorted(counts, key=lambda label: (-counts[label], label))
    code_of = {label: n for n, label in enumerate(ordered)}
    palette = qualitative.Safe + qualitative.Pastel
    colours = tuple(GREY if highlight and label == "others" else palette[0 if highlight else n % len(palette)]
                    for n, label in enumerate(ordered))
    size, opacity = marker_scale(len(layout.ids))
    return PointStyle(tuple(code_of[label] for label in labels), tuple(ordered), colours,
                      tuple(counts[label] for label in ordered), code_of.get(highlight, -1) if highlight else -1,
                      size, opacity)


def build_figure(layout: MapLayout, records: dict[int, ImageRecord], overlay: Retrieval | None) -> go.Figure:
    """Every live image as a point of one trace, first drawn coloured by category, and the overlay.

    The figure does not depend on the colouring or the highlight: the browser restyles its points
    (dashboard/map_client.py). A changed figure makes Streamlit draw the chart anew, WebGL context and all:
    1-3 s at 20,000 points in Chromium, against 0.5 s for the page when only the points' colours change."""
    rows = shown_rows(layout, records)
    first = point_style(layout, records, "Category")
    large = len(layout.ids) > WEBGL_FROM
    marker = dict(color=np.asarray(first.codes, np.int64), cmin=-0.5, cmax=len(first.colours) - 0.5, showscale=False,
                  colorscale=colour_steps(first.colours), size=first.size, opacity=first.opacity)
    if not large:
        marker["line"] = dict(width=0.5, color="white")
    fig = go.Figure()
    fig.add_trace((go.Scattergl if large else go.Scatter)(
        x=layout.xy[rows, 0], y=layout.xy[rows, 1], mode="markers", name="images", showlegend=False, marker=marker,
        meta=first.to_client()["sig"],  # the colouring drawn: the browser restyles only for another
        # only the id per point (sent as a typed array): the label, caption and tags come with the hover preview
        customdata=np.asarray(layout.ids, np.int64)[rows], hovertemplate="<b>#%{customdata}</b><extra></extra>"))
    if overlay is not None:
        add_overlay(fig, layout, overlay)
    fig.update_layout(meta=MAP_META, dragmode="lasso", height=640, margin=dict(l=10, r=10, t=40, b=10),
                      plot_bgcolor="#fafbfc", xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def colour_steps(colours: tuple[str, ...]) -> list[list]:
    """A colour scale over codes 0..k-1 (cmin -0.5, cmax k-0.5) that gives code n exactly colour n."""
    k = max(len(colours), 1)
    return [[edge, colour] for n, colour in enumerate(colours) for edge in (n / k, (n + 1) / k)] or [[0, GREY], [1, GREY]]


def marker_scale(points: int) -> tuple[float, float]:
    """Marker size and opacity for a map of ``points``: at 20,000 full-size opaque markers cover each other, so
    a highlighted third of them looked like every point coloured; smaller and see-through, density shows."""
    share = 1500 / max(points, 1)
    return float(np.clip(9 * np.sqrt(share), 2.5, 9)), float(np.clip(np.sqrt(2 * share), 0.35, 1.0))


LABEL_POSITIONS = ("top center", "bottom center", "middle right", "middle left", "top right", "bottom left")


def label_positions(points: list[tuple[float, float]], near: float) -> list[str]:
    """A text position per label that differs from those of the labels already placed nearby."""
    positions: list[str] = []
    for n, (x, y) in enumerate(points):
        crowd = sum(1 for (px, py) in points[:n] if abs(px - x) < near and abs(py - y) < near)
        positions.append(LABEL_POSITIONS[crowd % len(LABEL_POSITIONS)])
    return positions


def add_overlay(fig: go.Figure, layout: MapLayout, retrieval: Retrieval) -> None:
    """Each sub-query as a star at the centre of its hits, with a solid line and ring to each kept hit
    and a dotted grey line and cross to each hit the filter left out (its reason on hover)."""
    by_query: dict[str, list] = {}
    for hit in retrieval.hits:
        by_query.setdefault(hit.subquery or retrieval.prompt, []).append(hit)
    kept = {(h.subquery, h.id) for h in retrieval.kept}
    reasons = {(h.subquery, h.id): why for h, why in retrieval.filtered}
    placed = place_queries(layout, {q: [(h.id, h.score) for h in hits] for q, hits in by_query.items()})
    extent = float(np.ptp(layout.xy, axis=0).max()) if len(layout.ids) else 1.0
    positions = label_positions(list(placed.values()), near=0.08 * max(extent, 1e-6))
    palette = qualitative.Bold
    for n, ((query, (qx, qy)), position) in enumerate(zip(placed.items(), positions)):
        colour = palette[n % len(palette)]
        lines: dict[bool, tuple[list, list, list]] = {True: ([], [], []), False: ([], [], [])}
        for hit in by_query[query]:
            pos = layout.position(hit.id)
            if pos:
                xs, ys, notes = lines[(hit.subquery, hit.id) in kept]
                xs += [qx, pos[0], None]
                ys += [qy, pos[1], None]
                notes.append((pos, hit, reasons.get((hit.subquery, hit.id), "")))
        for is_kept, (xs, ys, notes) in lines.items():
            if not notes:
                continue
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                     line=dict(color=colour if is_kept else "#9aa0a6", width=1.6 if is_kept else 1,
                                               dash="solid" if is_kept else "dot")))
            fig.add_trace(go.Scatter(
                x=[p[0] for p, _, _ in notes], y=[p[1] for p, _, _ in notes], mode="markers", showlegend=False,
                marker=dict(symbol="circle-open" if is_kept else "x-thin-open", size=15 if is_kept else 11,
                            color=colour if is_kept else "#5f6368", line=dict(width=2)),
                text=[f"#{h.id} {'kept' if is_kept else 'filtered: ' + why} ({h.score:.3f})" for _, h, why in notes],
                hovertemplate=f"<b>{query[:40]}</b><br>%{{text}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[qx], y=[qy], mode="markers+text", text=[query[:28]], textposition=position,
                                 name=f"sub-query: {query[:40]}", hovertemplate=f"<b>{query}</b><extra></extra>",
                                 textfont=dict(size=12, color="#202124"),
                                 marker=dict(symbol="star", size=20, color=colour, line=dict(width=1, color="black"))))


def ids_from_selection(points) -> list[int]:
    """Image ids of the selected points (overlay markers carry no id and are ignored)."""
    ids = []
    for p in points:
        data = p.get("customdata")
        value = data[0] if isinstance(data, (list, tuple)) and data else data
        if isinstance(value, (int, float)) and int(value) not in ids:
            ids.append(int(value))
    return ids
