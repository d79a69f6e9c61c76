"""The embedding map's Plotly figure: points coloured by category or tag, a sub-query overlay, and a
hover preview (a small script that shows each point's thumbnail next to the cursor)."""

from __future__ import annotations

from collections import Counter

import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

from rdm.db import ImageRecord
from rdm.embedmap import MapLayout, place_queries
from rdm.retrieve import Retrieval

MAP_META = "rdm-embedding-map"  # lets the hover-preview script find this chart
MAX_LEGEND = 12

HOVER_JS = """
export default function(component) {
  const thumbs = (component.data && component.data.thumbs) || {};
  window.__rdmThumbs = thumbs;
  let tip = document.getElementById("rdm-map-tip");
  if (!tip) {
    tip = document.createElement("div");
    tip.id = "rdm-map-tip";
    tip.style.cssText = "position:fixed;display:none;pointer-events:none;z-index:100000;background:#fff;"
      + "border:1px solid #ccd;border-radius:6px;padding:4px;box-shadow:0 2px 10px rgba(0,0,0,.25)";
    const img = document.createElement("img");
    img.style.cssText = "display:block;max-width:112px;max-height:112px";
    tip.appendChild(img);
    document.body.appendChild(tip);
  }
  const attach = (gd) => {
    if (gd.__rdmHover || !gd.layout || gd.layout.meta !== "%(meta)s" || !gd.on) return;
    gd.__rdmHover = true;
    gd.on("plotly_hover", (ev) => {
      const p = ev.points && ev.points[0];
      const id = p && (Array.isArray(p.customdata) ? p.customdata[0] : p.customdata);
      const src = (window.__rdmThumbs || {})[String(id)];
      if (!src) { tip.style.display = "none"; return; }
      tip.firstChild.src = src;
      const e = ev.event || {};
      tip.style.left = Math.max(4, (e.clientX || 0) - 130) + "px";
      tip.style.top = Math.max(4, (e.clientY || 0) - 130) + "px";
      tip.style.display = "block";
    });
    gd.on("plotly_unhover", () => { tip.style.display = "none"; });
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


def label_for(record: ImageRecord, colour_by: str, top_tags: set[str]) -> str:
    if colour_by == "Category":
        return record.category or "(none)"
    common = [t for t in record.tags if t in top_tags]
    return common[0] if common else ("other tags" if record.tags else "untagged")


def build_figure(layout: MapLayout, records: dict[int, ImageRecord], colour_by: str,
                 overlay: Retrieval | None) -> go.Figure:
    tag_counts = Counter(t for r in records.values() for t in r.tags)
    top_tags = {t for t, _ in tag_counts.most_common(MAX_LEGEND)}
    groups: dict[str, list[int]] = {}
    for row, image_id in enumerate(layout.ids):
        if image_id in records:
            groups.setdefault(label_for(records[image_id], colour_by, top_tags), []).append(row)
    fig = go.Figure()
    palette = qualitative.Safe + qualitative.Pastel
    scatter = go.Scattergl if len(layout.ids) > 3000 else go.Scatter
    for n, (label, rows) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1]))):
        recs = [records[layout.ids[r]] for r in rows]
        fig.add_trace(scatter(
            x=layout.xy[rows, 0], y=layout.xy[rows, 1], mode="markers", name=f"{label} ({len(rows)})",
            marker=dict(size=9, color=palette[n % len(palette)], line=dict(width=0.5, color="white")),
            customdata=[[r.id, (r.caption or r.filename)[:80], ", ".join(r.tags[:5])] for r in recs],
            hovertemplate="<b>#%{customdata[0]}</b> " + label + "<br>%{customdata[1]}<br>"
                          "<i>%{customdata[2]}</i><extra></extra>"))
    if overlay is not None:
        add_overlay(fig, layout, overlay)
    fig.update_layout(meta=MAP_META, dragmode="lasso", height=640, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(title=colour_by, itemsizing="constant"), plot_bgcolor="#fafbfc",
                      xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def add_overlay(fig: go.Figure, layout: MapLayout, retrieval: Retrieval) -> None:
    """Each sub-query as a star at the centre of its hits, with lines to the hits."""
    by_query: dict[str, list] = {}
    for hit in retrieval.hits:
        by_query.setdefault(hit.subquery or retrieval.prompt, []).append(hit)
    placed = place_queries(layout, {q: [(h.id, h.score) for h in hits] for q, hits in by_query.items()})
    palette = qualitative.Bold
    for n, (query, (qx, qy)) in enumerate(placed.items()):
        colour = palette[n % len(palette)]
        xs, ys = [], []
        for hit in by_query[query]:
            pos = layout.position(hit.id)
            if pos:
                xs += [qx, pos[0], None]
                ys += [qy, pos[1], None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=colour, width=1, dash="dot"),
                                 hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=[qx], y=[qy], mode="markers+text", text=[query], textposition="top center",
                                 name=f"sub-query: {query[:40]}", hovertemplate=f"<b>{query}</b><extra></extra>",
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
