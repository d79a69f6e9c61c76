"""Retrieval inspector: a prompt's sub-queries (editable), each one's top-k hits with their scores (image
cosine and text match, as the retrieval kind fuses them) against the absolute and relative thresholds,
kept or filtered; the full-prompt baseline beside it;
the resulting conditioning plan with its weights and the coverage of every sub-query."""

import pandas as pd
import streamlit as st

from dashboard import PAGES, state
from dashboard.config import llm_config, settings
from dashboard.feedback import guard, page_header
from dashboard.grid import Tile, image_grid
from dashboard.prompt import seed_prompt_picker
from dashboard.resources import db_key, encoder, require_store, thumbnail_uri
from dashboard.retrieval_knobs import retrieval_knobs
from rdm.decompose import decompose
from rdm.retrieve import plan_for
from rdm.decompose.table import TEXT, WEIGHT, from_table, table_rows

KEY = "retrieval"
TABLE_START = f"{KEY}:table-start"  # (the decomposer's result, the rows the editor started from)


def marks(retrieval) -> dict[tuple, str]:
    """(sub-query, image id) -> why the hit was filtered; kept hits are absent."""
    return {(h.subquery, h.id): reason for h, reason in retrieval.filtered}


def hit_tiles(hits, why: dict, kept: set) -> list[Tile]:
    tiles = []
    for h in hits:
        if (h.subquery, h.id) in kept:
            tiles.append(Tile(h.record, h.score, ":green-badge[kept]", note=h.explain()))
        else:
            reason = why.get((h.subquery, h.id), "")
            tiles.append(Tile(h.record, h.score, ":red-badge[filtered]", note=f"{reason} · {h.explain()}"))
    return tiles


def plan_table(plan, db: str) -> pd.DataFrame:
    return pd.DataFrame([{
        "picture": thumbnail_uri(db, i.image_id) if i.image_id is not None else None,
        "kind": i.kind, "source": i.source,
        "item": i.text if i.kind == "text" else (f"#{i.image_id}" if i.image_id is not None else i.path),
        "answers": i.subquery or "", "score": i.score, "weight": i.weight} for i in plan.items])


def table_start(original):
    """The rows the sub-query editor starts from: the session's edited table of this prompt and decomposer,
    else the decomposer's own. Its edits are kept as changes to these rows, so the start stays fixed while
    the editor lives, and is read again when the page is entered anew (Streamlit dropped the editor)."""
    kept = state.edited_decomposition(original.prompt)
    kept = kept if kept is not None and kept.backend == original.backend else original
    held = st.session_state.get(TABLE_START)
    if held is None or held[0] != original or f"{KEY}:table:{hash(held[1])}" not in st.session_state:
        held = st.session_state[TABLE_START] = (original, kept)
    return held[1]


PLAN_COLUMNS = {
    "picture": st.column_config.ImageColumn("Picture", width="small"),
    "weight": st.column_config.ProgressColumn("Weight", min_value=0.0, max_value=1.0, format="%.3f"),
    "score": st.column_config.NumberColumn("Score", format="%.3f", help="The hit's score: cosine, text match "
                                           "or both, as the retrieval kind fuses them"),
}


s = settings()
page_header("Retrieval inspector", "How a prompt becomes sub-queries, which reference photos each one "
                                     "retrieves, which survive the filter, and the plan that results.")
store = require_store(s)
prompt = seed_prompt_picker(KEY)

# 1. the knobs, shared with Generate & compare and the map overlay
knobs = retrieval_knobs(KEY, store.encoder_name)
backend, k, relative = knobs.decomposer, knobs.k, knobs.filters.relative

if not prompt.strip():
    st.info("Pick **Prompt A** or **Prompt B** above, or write a prompt.", icon=":material/edit_note:")
    st.stop()

# 2. sub-queries: the decomposer's, then the user's edits
decomposition = None
with guard("Decomposing the prompt"):
    with st.spinner("Splitting the prompt into sub-queries…"):
        original = decompose(prompt, backend, llm=llm_config(s))
    if original.fallback_reason:
        st.warning(f"**The LLM was not used:** {original.fallback_reason}. These sub-queries come from the "
                   "offline decomposer.", icon=":material/cloud_off:")
    st.subheader("Sub-queries", divider="gray")
    st.caption(f"Summary: *{original.summary}* · from **{original.backend}**"
               + (f" · repaired: {'; '.join(original.repairs)}" if original.repairs else "")
               + ". Edit the table (text, weight); rows can be added or deleted. Weights are renormalised to sum to 1.")
    start = table_start(original)
    edited = st.data_editor(pd.DataFrame(table_rows(start)), num_rows="dynamic", key=f"{KEY}:table:{hash(start)}",
                            width="stretch",
                            column_config={TEXT: st.column_config.TextColumn("Sub-query", width="large"),
                                           WEIGHT: st.column_config.NumberColumn("Weight", min_value=0.0,
                                                                                 format="%.3f")})
    decomposition = from_table(original, edited.to_dict("records"))
    state.set_edited_decomposition(decomposition)  # Generate, the map overlay and a reload start from these
    if decomposition is not original:
        st.caption("Edited weights in use: " + ", ".join(f"{q.text} **{q.weight:.2f}**"
                                                           for q in decomposition.subqueries))

if decomposition is None:
    st.stop()

# 3. retrieval: sub-queries with the filter, and the baseline (full prompt, KeyBERT keywords)
retrieval = baseline = None
with guard("Retrieving"):
    encoder(store)
    retrieval = plan_for(store, prompt, "subquery+filter", k=k, budget=knobs.budget, filters=knobs.filters,
                         fusion=knobs.fusion, decomposition=decomposition)
with guard("Retrieving the baseline"):
    with st.spinner("KeyBERT keywords for the baseline…"):
        baseline = plan_for(store, prompt, "exp1", k=int(k), fusion=knobs.fusion)

if retrieval is not None:
    m = st.columns(5)
    m[0].metric("Sub-queries", len(decomposition.subqueries), border=True)
    m[1].metric("Hits", len(retrieval.hits), border=True)
    m[2].metric("Kept", len(retrieval.kept), border=True)
    m[3].metric("Filtered", len(retrieval.filtered), border=True)
    m[4].metric("Uncovered", len(retrieval.uncovered), border=True,
                help="Sub-queries left with no reference photo")

left, right = st.columns([7, 3], gap="large")
with left:
    st.subheader("Per sub-query (filtered)", divider="gray")
    if retrieval is not None:
        why = marks(retrieval)
        kept = {(h.subquery, h.id) for h in retrieval.kept}
        for n, q in enumerate(decomposition.subqueries):
            hits = [h for h in retrieval.hits if h.subquery == q.text]
            refs = [h.id for h in retrieval.kept if h.subquery == q.text]
            best = max((h.score for h in hits), default=0.0)
            covered = q.text not in retrieval.uncovered
            status = (f":green-badge[covered by {', '.join(f'#{i}' for i in refs) or 'a shared reference'}]"
                      if covered else ":red-badge[not covered]")
            st.markdown(f"**{q.text}** · weight {q.weight:.2f} · best {best:.3f} · relative cut "
                        f"{relative * best:.3f} {status}")
            image_grid(store, hit_tiles(hits, why, kept), key=f"{KEY}:hits", columns=max(int(k), 4),
                         selectable=False, name=f"{KEY}-hits-{n}", compact=True)
        if st.button("Show these sub-queries on the embedding map", icon=":material/scatter_plot:"):
            state.set_map_overlay(retrieval)
            st.switch_page(PAGES / "embedding_map.py")
with right:
    st.subheader("Baseline: full prompt", divider="gray")
    if baseline is not None:
        if baseline.decomposition is not None:
            st.markdown("**KeyBERT keywords:** " + ", ".join(
                f"{q.text} ({q.score:.2f})" if q.score is not None else q.text
                for q in baseline.decomposition.subqueries))
        st.caption(f"The whole prompt as one query: top {int(k)} by {knobs.fusion.kind} score, no filter.")
        image_grid(store, [Tile(h.record, h.score) for h in baseline.hits], key=f"{KEY}:baseline",
                     columns=2, selectable=False, compact=True)

st.subheader("Conditioning plan", divider="gray")
if retrieval is not None:
    st.caption("What conditions Kandinsky's prior in mode *subquery+filter*: the weights sum to 1. "
               + " ".join(retrieval.plan.notes))
    st.dataframe(plan_table(retrieval.plan, db_key(store)), hide_index=True, width="stretch",
                 column_config=PLAN_COLUMNS,
                 row_height=56)
if baseline is not None:
    with st.expander("Baseline plan (exp1: KeyBERT keywords weighted by their scores)"):
        st.dataframe(plan_table(baseline.plan, db_key(store)), hide_index=True, width="stretch",
                     column_config=PLAN_COLUMNS)
