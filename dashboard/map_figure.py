"""The embedding map's Plotly figure: points coloured by category or tag, a sub-query overlay, and a
hover preview (a small script that shows the hovered point's thumbnail next to the cursor)."""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

from rdm.db import ImageRecord
from rdm.curation import MapLayout, place_queries
from rdm.retrieve import Retrieval

MAP_META = "rdm-embedding-map"  # lets the hover-preview script find this chart
MAX_LEGEND = 12
WEBGL_FROM = 3000  # points: past this Plotly draws with WebGL (SVG slows the browser at tens of thousands)

# The thumbnail, caption and tags of a hovered point are asked for when the cursor rests on it (a trigger that
# reruns only the preview's fragment) and kept in the page: sending them per point up front was 42.5 MB (the
# thumbnails) and 0.9 MB (the words) per rerun at 20k images.
HOVER_JS = """
export default function(component) {
  const cache = window.__rdmThumbs || (window.__rdmThumbs = {});
  const data = component.data || {};
  if (data.id != null && data.src) cache[String(data.id)] = {src: data.src, text: data.text || ""};
  window.__rdmAsk = (id) => component.setTriggerValue("hover", id);
  let tip = document.getElementById("rdm-map-tip");
  if (!tip) {
    tip = document.createElement("div");
    tip.id = "rdm-map-tip";
    tip.style.cssText = "position:fixed;display:none;pointer-events:none;z-index:100000;background:#fff;"
      + "border:1px solid #ccd;border-radius:6px;padding:4px;box-shadow:0 2px 10px rgba(0,0,0,.25)";
    const img = document.createElement("img");
    img.style.cssText = "display:block;max-width:112px;max-height:112px";
    tip.appendChild(img);
    const words = document.createElement("div");
    words.style.cssText = "max-width:180px;font:12px/1.3 sans-serif;color:#202124;margin-top:3px";
    tip.appendChild(words);
    document.body.appendChild(tip);
  }
  const show = () => {
    const at = window.__rdmHovered;
    const seen = at && cache[at.id];
    if (!seen) { tip.style.display = "none"; return; }
    tip.firstChild.src = seen.src;
    tip.lastChild.textContent = seen.text;
    tip.style.left = Math.max(4, at.x - 130) + "px";
    tip.style.top = Math.max(4, at.y - 130) + "px";
    tip.style.display = "block";
  };
  show();  // an answer to the last request has just arrived
  const attach = (gd) => {
    if (gd.__rdmHover || !gd.layout || gd.layout.meta !== "%(meta)s" || !gd.on) return;
    gd.__rdmHover = true;
    gd.on("plotly_hover", (ev) => {
      const p = ev.points && ev.points[0];
      const id = p && (Array.isArray(p.customdata) ? p.customdata[0] : p.customdata);
      const e = ev.event || {};
      clearTimeout(window.__rdmAskTimer);
      if (id == null) { window.__rdmHovered = null; show(); return; }
      window.__rdmHovered = {id: String(id), x: e.clientX || 0, y: e.clientY || 0};
      show();
      if (!cache[String(id)]) window.__rdmAskTimer = setTimeout(() => window.__rdmAsk(id), 120);
    });
    gd.on("plotly_unhover", () => {
      clearTimeout(window.__rdmAskTimer);
      window.__rdmHovered = null;
      show();
    });
  };
  const scan = () => document.querySelectorAll(".js-plotly-plot").forEach(attach);
  scan();
  if (!window.__rdmObserver) {
    window.__rdmObserver = new MutationObserver(scan);
    window.__rdmObserver.observe(document.body, {childList: true, subtree: true});
  }
}
""" % {"meta": MAP_META}

hover_preview = st.components.v2.component("rdm_map_hover_preview", js=HOVER_JS)
HOVER_KEY, HOVER_ANSWER = "map:hover", "map:hover:answer"


@st.fragment
def hover_previews(thumbnail: Callable[[int], str | None], describe: Callable[[int], str]) -> None:
    """The hover preview; a hovered point's thumbnail and ``describe(id)`` (its caption and tags) come back in a
    rerun of this fragment only."""
    asked = hover_preview(data=st.session_state.get(HOVER_ANSWER), key=HOVER_KEY, on_hover_change=lambda: None)
    if asked.hover is not None:
        image_id = int(asked.hover)
        st.session_state[HOVER_ANSWER] = {"id": asked.hover, "src": thumbnail(image_id), "text": describe(image_id)}
        st.rerun(scope="fragment")


def hover_text(record: ImageRecord | None) -> str:
    """The words under a hovered point's thumbnail: its caption (or file name) and first tags."""
    if record is None:
        return ""
    tags = ", ".join(record.tags[:5])
    return (record.caption or record.filename)[:80] + (f" · {tags}" if tags else "")


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


def build_figure(layout: MapLayout, records: dict[int, ImageRecord], colour_by: str,
                 overlay: Retrieval | None, highlight: str | None = None) -> go.Figure:
    """Points coloured by category or by their most common tag; ``highlight`` (a category or any tag)
    draws its images in colour and every other one in grey."""
    rows_by_label: dict[str, list[int]] = {}
    if highlight:
        for row, image_id in enumerate(layout.ids):
            if image_id in records:
                rows_by_label.setdefault(highlight if _has(records[image_id], colour_by, highlight) else "others",
                                         []).append(row)
    else:
        tag_counts = Counter(t for r in records.values() for t in r.tags)
        top_tags = {t for t, _ in tag_counts.most_common(MAX_LEGEND)}
        for row, image_id in enumerate(layout.ids):
            if image_id in records:
                rows_by_label.setdefault(label_for(records[image_id], colour_by, top_tags), []).append(row)
    fig = go.Figure()
    palette = qualitative.Safe + qualitative.Pastel
    size, opacity = marker_scale(len(layout.ids))
    scatter = go.Scattergl if len(layout.ids) > WEBGL_FROM else go.Scatter
    edge = dict(width=0.5, color="white") if len(layout.ids) <= WEBGL_FROM else dict(width=0)
    ordered = sorted(rows_by_label.items(), key=lambda kv: (kv[0] != "others", -len(kv[1])))  # grey drawn first
    ids = np.asarray(layout.ids, np.int64)
    for n, (label, rows) in enumerate(ordered):
        grey = highlight is not None and label == "others"
        marker = dict(size=size * 0.8, color="#c9ccd3", opacity=opacity * 0.5) if grey else \
            dict(size=size * (1.25 if highlight else 1), color=palette[0 if highlight else n % len(palette)],
                 opacity=opacity, line=edge)
        fig.add_trace(scatter(
            x=layout.xy[rows, 0], y=layout.xy[rows, 1], mode="markers", name=f"{label} ({len(rows)})", marker=marker,
            # only the id per point (sent as a typed array): the caption and tags come with the hover preview
            customdata=ids[rows], hovertemplate="<b>#%{customdata}</b> " + label + "<extra></extra>"))
    if overlay is not None:
        add_overlay(fig, layout, overlay)
    fig.update_layout(meta=MAP_META, dragmode="lasso", height=640, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(title=colour_by, itemsizing="constant"), plot_bgcolor="#fafbfc",
                      xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


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
