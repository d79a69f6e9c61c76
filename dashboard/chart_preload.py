"""Loads the browser's chart library (Plotly, as Streamlit bundles it) while the person is reading a page, so
the first chart they open does not wait for it.

Streamlit fetches its Plotly chunk (4.7 MB) when a page first draws a Plotly chart, and evaluating it held the
browser's main thread 0.8 s of the Embedding map's 2.2 s first open at 20,000 images (headless Chromium on 2
cores; 1.0-1.3 s once it was loaded). Here a script in the sidebar imports the same chunk, by the same URL, once
per tab, when the page has been left alone for IDLE_MS (no click, key or scroll, no script running or awaited,
nothing being drawn): Streamlit's own import of it then finds it loaded. Only the wait is ours; what is loaded
is Streamlit's own module."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import streamlit as st

log = logging.getLogger(__name__)

STATIC_JS = Path(st.__file__).parent / "static" / "static" / "js"  # the frontend's bundles, as Streamlit serves them
# a person reading the page: a click within this is not delayed by the load; longer than a page refreshing
# every 1.5 s (one following jobs, the Queue) goes quiet, so the load never lands between its refreshes
IDLE_MS = 2000

# The chunk's URL is taken relative to Streamlit's main script, as its own lazy import does, so the browser's
# module map holds one module for both (a second copy would load Plotly twice).
PRELOAD_JS = """
export default function(component) {
  const chunk = (component.data || {}).chunk;
  if (!chunk || window.Plotly || window.__rdmChartPreload) return;
  const main = document.querySelector('script[type="module"][src*="/static/js/index."]');
  const app = document.querySelector('[data-testid="stApp"]');
  if (!main || !app) return;
  const url = new URL("./" + chunk, main.src).href;
  window.__rdmChartPreload = "waiting";
  // idle: no script running, none asked for by a click or key still unanswered (at most 5 s), and none of
  // those nor a long task for IDLE_MS
  let last = performance.now(), asked = false;
  const running = () => app.getAttribute("data-test-script-state") === "running";
  const touched = () => { last = performance.now(); asked = true; };
  const seen = new MutationObserver(() => { if (!running()) { last = performance.now(); asked = false; } });
  seen.observe(app, {attributes: true, attributeFilter: ["data-test-script-state"]});
  const busy = new PerformanceObserver(list => {  // the page still drawing (React, charts) is not idle either
    for (const e of list.getEntries()) last = Math.max(last, e.startTime + e.duration);
  });
  try { busy.observe({type: "longtask"}); } catch (e) { /* no long-task timing here: clicks and runs only */ }
  const events = ["pointerdown", "keydown", "wheel"];
  events.forEach(e => window.addEventListener(e, touched, {capture: true, passive: true}));
  const stop = () => {
    seen.disconnect();
    busy.disconnect();
    events.forEach(e => window.removeEventListener(e, touched, {capture: true}));
  };
  const tick = () => {
    if (window.Plotly) { window.__rdmChartPreload = "loaded by a chart"; return stop(); }
    const quiet = performance.now() - last;
    if (running() || quiet < %(idle)d || (asked && quiet < 5000)) { setTimeout(tick, 200); return; }
    window.__rdmChartPreload = "loading";
    stop();
    import(url).then(() => { window.__rdmChartPreload = "loaded"; },
                     () => { window.__rdmChartPreload = "failed"; });  // a chart then loads it as before
  };
  setTimeout(tick, %(idle)d);
}
""" % {"idle": IDLE_MS}

preload_script = st.components.v2.component("rdm_chart_preload", js=PRELOAD_JS)


@cache
def plotly_chunk() -> str | None:
    """The file name of Streamlit's Plotly chunk, or None when this Streamlit has not exactly one."""
    found = sorted(p.name for p in STATIC_JS.glob("PlotlyChart.*.js"))
    if len(found) != 1:
        log.warning("no single Plotly chunk in %s (%s): charts load Plotly when first drawn", STATIC_JS, found)
        return None
    return found[0]


def preload_charts() -> None:
    """Mount the loader (in the sidebar: it draws nothing); a tab that has Plotly already ignores it."""
    chunk = plotly_chunk()
    if chunk is not None:
        preload_script(data={"chunk": chunk}, key="chart-preload")
