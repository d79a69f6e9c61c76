"""Overview: the DB (counts, encoder, index version), the generation backend and the LLM, with fixes."""

import streamlit as st

from dashboard import PAGES
from dashboard.count_bars import count_bars
from dashboard.config import settings
from dashboard.feedback import guard, page_header, show_check
from dashboard.resources import backend_status, clear_status_checks, llm_status, store_or_none
from rdm.runs import list_runs

s = settings()
page_header("Overview", "What the studio runs against: the reference DB, the generation backend and the LLM.")

# 1. the reference DB
st.subheader("Reference DB", divider="gray")
store = store_or_none(s)
if store is not None:
    with guard("Reading the DB"):
        stats = store.stats()
        a, b, c, d = st.columns(4)
        a.metric("Live images", f"{stats.live:,}", border=True)
        b.metric("Deleted (restorable)", f"{stats.deleted:,}", border=True)
        c.metric("Categories", len(stats.by_category), border=True)
        d.metric("Index version", stats.index_version, help=f"Revision {stats.revision}: bumps on every edit",
                 border=True)
        left, right = st.columns([3, 2])
        with left:
            st.markdown("**Images per category**")
            if stats.by_category:
                st.html(count_bars({k or "(none)": n for k, n in stats.by_category.items()}, "images"))
            else:
                st.info("The DB is empty: add images on **Browse & curate → Upload**.")
        with right:
            st.markdown(f"**Encoder** `{stats.encoder}` · {stats.dim}-d vectors")
            st.caption(stats.encoder_reason or "No reason recorded.")
            st.caption(f"DB folder: `{stats.path}`")
            st.caption(f"Vector index: {store.index_info.describe()} · {store.index_backend.where()}")
            if store.index_note:
                st.warning(f"{store.index_note}. Run `rdm check --repair` to save the rebuilt index.")

# 2. generation and the LLM
left, right = st.columns(2)
with left:
    st.subheader("Generation backend", divider="gray")
    with guard("Checking the backend"):
        show_check(backend_status(s))
with right:
    st.subheader("LLM for sub-queries", divider="gray")
    with guard("Checking the LLM"):
        show_check(llm_status(s))
if st.button("Check again", icon=":material/refresh:"):
    clear_status_checks()
    st.rerun()

# 3. saved runs and where to go next
st.subheader("Runs", divider="gray")
with guard("Listing runs"):
    runs = list_runs(s.runs_dir)
    st.markdown(f"**{len(runs)}** saved run(s) in `{s.runs_dir}`" +
                (f"; the latest: *{runs[0].prompt[:90]}* ({runs[0].created})" if runs else "."))
cols = st.columns(5)
for col, (page, label) in zip(cols, [("browse.py", "Browse & curate"), ("embedding_map.py", "Embedding map"),
                                     ("retrieval.py", "Retrieval inspector"), ("generate.py", "Generate & compare"),
                                     ("runs.py", "Runs & report")]):
    col.page_link(PAGES / page, label=label, icon=":material/arrow_forward:")
