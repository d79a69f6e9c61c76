"""Embedding map: UMAP of the DB's embeddings, coloured by category or tag; lasso/box selection
opens the images in a grid with the same bulk actions as Browse; a prompt's sub-queries and their
hits can be overlaid."""

from collections import Counter

import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

from dashboard import widgets as w
from rdm.decompose import BACKENDS as DECOMPOSERS
from rdm.embedmap import place_queries
from rdm.retrieve import plan_for

KEY = "map"
LASSO = f"{KEY}:lasso-ids"  # the images picked on the map, shown in the grid below
OVERLAY = f"{KEY}:overlay"  # a Retrieval whose sub-queries and hits are drawn on the map
MAP_META = "rdm-embedding-map"  # lets the hover-preview script find this chart
MAX_LEGEND = 12
GRID_MAX = 96

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


def label_for(record, colour_by: str, top_tags: set[str]) -> str:
    if colour_by == "Category":
        return record.category or "(none)"
    common = [t for t in record.tags if t in top_tags]
    return common[0] if common else ("other tags" if record.tags else "untagged")


def build_figure(layout, records: dict, colour_by: str, overlay) -> go.Figure:
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


def add_overlay(fig: go.Figure, layout, retrieval) -> None:
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


def overlay_form(store, s) -> None:
    with st.expander("Overlay a prompt's sub-queries and their hits", icon=":material/hub:",
                     expanded=st.session_state.get(OVERLAY) is not None):
        prompt = w.seed_prompt_picker(KEY, height=90)
        c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
        backend = c1.selectbox("Sub-queries from", DECOMPOSERS, index=DECOMPOSERS.index("offline"),
                               key=f"{KEY}:decomposer")
        k = c2.number_input("Hits per sub-query", 1, 20, 5, key=f"{KEY}:k")
        go_, clear = c3.columns(2)
        if go_.button("Overlay", type="primary", icon=":material/hub:", disabled=not prompt.strip()):
            with w.guard("Retrieving"), st.spinner("Decomposing and retrieving…"):
                w.encoder(store)
                st.session_state[OVERLAY] = plan_for(store, prompt, "subquery", k=int(k),
                                                     decomposer_backend=backend, llm=w.llm_config(s))
        if clear.button("Clear overlay", disabled=st.session_state.get(OVERLAY) is None):
            st.session_state[OVERLAY] = None
            st.rerun()


s = w.settings()
w.page_header("Embedding map", "Each point is a live image; nearby points have similar embeddings. "
                               "Draw a lasso or box to pick images, hover to preview them.")
store = w.require_store(s)
db, version = w.db_key(store), store.index_version
overlay_form(store, s)
top, _ = st.columns([1, 3])
colour_by = top.segmented_control("Colour by", ["Category", "Tag"], default="Category", required=True,
                                  key=f"{KEY}:colour")

records: dict = {}
with w.guard("Drawing the map"):
    layout = w.map_layout(db, version)
    records = {r.id: r for r in store.records()}
    overlay = st.session_state.get(OVERLAY)
    st.caption(f"{layout.note} · encoder {store.encoder_name} · index version {version}"
               + (f" · overlay: {len(overlay.decomposition.subqueries)} sub-queries of “{overlay.prompt[:60]}…”"
                  if overlay is not None and overlay.decomposition else ""))
    fig = build_figure(layout, records, colour_by, overlay)
    # a new index version is a new chart: an old selection must not point into the new layout
    event = st.plotly_chart(fig, on_select="rerun", selection_mode=("box", "lasso"), key=f"{KEY}:chart:{version}",
                            config={"displaylogo": False})
    hover_preview(data={"thumbs": w.hover_thumbnails(db, version)}, key=f"{KEY}:hover")
    picked = ids_from_selection(event.selection.points if event else [])
    if picked and picked != st.session_state.get(f"{KEY}:last-event"):
        st.session_state[f"{KEY}:last-event"] = picked
        st.session_state[LASSO] = picked
        w.set_selection(KEY, picked)  # a fresh lasso selects its images for the bulk actions

st.subheader("Selected on the map", divider="gray")
chosen = [i for i in st.session_state.get(LASSO, []) if i in records]
if not chosen:
    st.caption("Draw a lasso or a box around points on the map to review those images here.")
else:
    w.bulk_actions(store, KEY)
    st.markdown(f"**{len(chosen)}** image(s) in the lasso" +
                (f"; the first {GRID_MAX} are shown" if len(chosen) > GRID_MAX else ""))
    w.select_buttons(KEY, chosen[:GRID_MAX])
    w.image_grid(store, [w.Tile(records[i]) for i in chosen[:GRID_MAX]], key=KEY)
