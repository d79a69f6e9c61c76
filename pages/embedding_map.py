"""Embedding map: UMAP of the DB's embeddings (saved per DB version; a large DB's fit runs as a background
job), coloured by category or tag with one highlighted; lasso/box selection opens the images in a grid with
the same bulk actions as Browse; a prompt's sub-queries and their kept and filtered hits can be overlaid."""

import streamlit as st

from dashboard import state
from dashboard.config import llm_config, settings
from dashboard.feedback import guard, page_header
from dashboard.grid import Tile, bulk_actions, image_grid, select_buttons
from dashboard.jobs_view import adopt, follow, followed, queue_map, report_end
from dashboard.map_client import hover_text, legend, map_client
from dashboard.map_figure import build_figure, highlight_choices, ids_from_selection, point_style
from dashboard.prompt import seed_prompt_picker
from dashboard.resources import db_key, encoder, image_records, map_layout, refit_map, require_store, thumbnail_uri
from rdm.decompose import BACKENDS as DECOMPOSERS
from rdm.curation.map_layouts import BACKGROUND_MIN, fit_due  # read at each rerun: a test lowers it
from rdm.retrieve import plan_for

KEY = "map"
JOB = f"{KEY}:jobs"  # the background fit this session follows
GRID_MAX = 96


def overlay_form(store, s) -> None:
    with st.expander("Overlay a prompt's sub-queries and their hits", icon=":material/hub:",
                     expanded=state.map_overlay() is not None):
        prompt = seed_prompt_picker(KEY, height=90)
        c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
        shared = state.retrieval_settings()  # the inspector's choices are the defaults here too
        backend = c1.selectbox("Sub-queries from", DECOMPOSERS, index=DECOMPOSERS.index(shared.decomposer),
                               key=f"{KEY}:decomposer")
        k = c2.number_input("Hits per sub-query", 1, 20, shared.k, key=f"{KEY}:k")
        go_, clear = c3.columns(2)
        edited = state.edited_decomposition(prompt)
        edited = edited if edited is not None and edited.backend == backend else None
        st.caption("Kept and filtered hits follow the Retrieval inspector's filter settings"
                   + (", and its edited sub-queries of this prompt." if edited else "."))
        if go_.button("Overlay", type="primary", icon=":material/hub:", disabled=not prompt.strip()):
            with guard("Retrieving"), st.spinner("Decomposing and retrieving…"):
                encoder(store)
                state.set_map_overlay(plan_for(store, prompt, "subquery+filter", k=int(k), decomposer_backend=backend,
                                               budget=shared.budget, filters=shared.filters, fusion=shared.fusion,
                                               llm=llm_config(s), decomposition=edited))
        if clear.button("Clear overlay", disabled=state.map_overlay() is None):
            state.set_map_overlay(None)
            st.rerun()


s = settings()
page_header("Embedding map", "Each point is a live image; nearby points have similar embeddings. "
                             "Draw a lasso or box to pick images, hover to preview them.")
store = require_store(s)
db, version = db_key(store), store.index_version
overlay_form(store, s)
records = {r.id: r for r in image_records(store)}
top, mark, refit = st.columns([1, 2, 1], vertical_alignment="bottom")
colour_by = top.segmented_control("Colour by", ["Category", "Tag"], default="Category", required=True,
                                  key=f"{KEY}:colour")
highlight = mark.selectbox(f"Highlight one {colour_by.lower()}", highlight_choices(records, colour_by), index=None,
                           key=f"{KEY}:highlight:{colour_by}", placeholder="(none: colour them all)")
large = len(records) >= BACKGROUND_MIN
if refit.button("Refit the layout", icon=":material/refresh:",
                help="Fit UMAP afresh: images added since the last fit were placed by it and the others kept their "
                     "places"):
    if large:
        queue_map(s, JOB, refit=True)
    else:
        with guard("Refitting the map"), st.spinner("Fitting UMAP afresh…"):
            refit_map(db)


def fitted(job) -> None:
    map_layout.clear()  # a refit replaced the layout saved for this version
    report_end(job, "Fitting the map")


adopt(s, JOB, "map")
due = large and fit_due(store)  # a first fit of thousands of images takes minutes: the worker does it
if due and not followed(JOB):
    queue_map(s, JOB)
follow(s, JOB, fitted)
if due and followed(JOB):
    st.info(f"The map of {len(records):,} images is being fitted in the background (about a minute per 10,000 "
            "images); it is saved with the DB and shows here when done. The rest of the studio works meanwhile.",
            icon=":material/hourglass_top:")
    st.stop()

with guard("Drawing the map"):
    layout = map_layout(db, version)
    overlay = state.map_overlay()
    st.caption(f"{layout.note} · encoder {store.encoder_name} · index version {version}"
               + (f" · overlay: {len(overlay.decomposition.subqueries)} sub-queries of “{overlay.prompt[:60]}…”"
                  if overlay is not None and overlay.decomposition else ""))
    style = point_style(layout, records, colour_by, highlight)
    legend(style, colour_by)
    # the same figure whatever the colouring (the script beside it restyles the points); a new index version
    # is a new chart: an old selection must not point into the new layout
    event = st.plotly_chart(build_figure(layout, records, overlay), on_select="rerun", selection_mode=("box", "lasso"),
                            key=f"{KEY}:chart:{version}", config={"displaylogo": False, "plotGlPixelRatio": 1})
    map_client(style, lambda image_id: thumbnail_uri(db, image_id), lambda image_id: hover_text(records.get(image_id)))
    picked = ids_from_selection(event.selection.points if event else [])
    if picked and picked != st.session_state.get(f"{KEY}:last-event"):
        st.session_state[f"{KEY}:last-event"] = picked
        state.set_map_lasso(picked)
        state.set_selection(KEY, picked)  # a fresh lasso selects its images for the bulk actions

st.subheader("Selected on the map", divider="gray")
chosen = [i for i in state.map_lasso() if i in records]
if not chosen:
    st.caption("Draw a lasso or a box around points on the map to review those images here.")
else:
    bulk_actions(store, KEY)
    st.markdown(f"**{len(chosen)}** image(s) in the lasso" +
                (f"; the first {GRID_MAX} are shown" if len(chosen) > GRID_MAX else ""))
    select_buttons(KEY, chosen[:GRID_MAX])
    image_grid(store, [Tile(records[i]) for i in chosen[:GRID_MAX]], key=KEY)
