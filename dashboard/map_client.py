"""The embedding map's browser side: a small script beside the chart that restyles its points (colour,
highlight) without Streamlit drawing the chart anew, and shows a hovered point's thumbnail, category,
caption and tags next to the cursor; and the legend of the colouring, drawn by Streamlit."""

from __future__ import annotations

import html
from typing import Callable

import streamlit as st

from dashboard.map_figure import MAP_META, PointStyle
from rdm.db import ImageRecord

# The thumbnail and words of a hovered point are asked for when the cursor rests on it (a trigger that reruns
# only this fragment) and kept in the page: sending them per point up front was 42.5 MB (the thumbnails) and
# 0.9 MB (the words) per rerun at 20k images. The colouring comes as one code per point, applied with
# Plotly.restyle to the chart already drawn (again whenever Streamlit draws it anew, e.g. for an overlay).
CLIENT_JS = """
export default function(component) {
  const cache = window.__rdmThumbs || (window.__rdmThumbs = {});
  const data = component.data || {};
  const answer = data.answer || {};
  if (answer.id != null && answer.src) cache[String(answer.id)] = {src: answer.src, text: answer.text || ""};
  if (data.style) window.__rdmStyle = data.style;
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
  const restyle = (gd) => {
    const style = window.__rdmStyle;
    if (gd.__rdmStyled === undefined) gd.__rdmStyled = (gd.data[0] || {}).meta;  // as the figure was drawn
    if (!style || !window.Plotly || gd.__rdmStyled === style.sig) return;
    const k = style.colours.length, hl = style.highlight;
    const scale = [];
    style.colours.forEach((c, i) => { scale.push([i / k, c]); scale.push([(i + 1) / k, c]); });
    const update = {"marker.color": [style.codes], "marker.colorscale": [scale], "marker.cmin": -0.5,
                    "marker.cmax": k - 0.5, "marker.size": style.size, "marker.opacity": style.opacity};
    if (hl >= 0) {  // the highlighted images larger and opaque, the rest smaller and fainter
      update["marker.size"] = [style.codes.map(c => c === hl ? style.size * 1.25 : style.size * 0.8)];
      update["marker.opacity"] = [style.codes.map(c => c === hl ? style.opacity : style.opacity * 0.5)];
    }
    gd.__rdmStyled = style.sig;
    window.Plotly.restyle(gd, update, [0]);
  };
  const attach = (gd) => {
    if (!gd.layout || gd.layout.meta !== "%(meta)s" || !gd.on) return;
    restyle(gd);
    if (gd.__rdmHover) return;
    gd.__rdmHover = true;
    gd.on("plotly_react", () => { gd.__rdmStyled = undefined; restyle(gd); });  // drawn from the figure again
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
  if (!window.__rdmObserver) {  // a chart drawn after this script ran (the first page, an overlay)
    window.__rdmObserver = new MutationObserver(scan);
    window.__rdmObserver.observe(document.body, {childList: true, subtree: true});
  }
}
""" % {"meta": MAP_META}

map_script = st.components.v2.component("rdm_map_client", js=CLIENT_JS)
HOVER_KEY, HOVER_ANSWER = "map:hover", "map:hover:answer"


@st.fragment
def map_client(style: PointStyle, thumbnail: Callable[[int], str | None], describe: Callable[[int], str]) -> None:
    """The script beside the chart: it colours the points by ``style`` and shows hover previews; a hovered
    point's thumbnail and ``describe(id)`` come back in a rerun of this fragment only."""
    asked = map_script(data={"style": style.to_client(), "answer": st.session_state.get(HOVER_ANSWER)},
                       key=HOVER_KEY, on_hover_change=lambda: None)
    if asked.hover is not None:
        image_id = int(asked.hover)
        st.session_state[HOVER_ANSWER] = {"id": asked.hover, "src": thumbnail(image_id), "text": describe(image_id)}
        st.rerun(scope="fragment")


def hover_text(record: ImageRecord | None) -> str:
    """The words under a hovered point's thumbnail: its category, caption (or file name) and first tags."""
    if record is None:
        return ""
    tags = ", ".join(record.tags[:5])
    return (f"{record.category or '(none)'} · " + (record.caption or record.filename)[:80]
            + (f" · {tags}" if tags else ""))


def legend(style: PointStyle, colour_by: str) -> None:
    """The colouring's labels with their colour and number of images, in one line over the chart."""
    items = "".join(f'<span style="white-space:nowrap;margin-right:14px"><span style="display:inline-block;width:10px;'
                    f'height:10px;border-radius:50%;background:{colour};margin-right:5px"></span>'
                    f"{html.escape(label)} ({count:,})</span>" for label, colour, count in style.legend())
    st.html(f'<div class="rdm-map-legend" style="font-size:14px;line-height:1.8"><b>{html.escape(colour_by)}</b>: '
            f"{items}</div>")
