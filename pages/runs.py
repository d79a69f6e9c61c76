"""Runs & report: the saved runs; compare two or more; open one with its HTML report and a zip."""

import pandas as pd
import streamlit as st

from dashboard import PAGES
from dashboard.config import settings
from dashboard.feedback import guard, page_header
from dashboard.run_view import TEST_MODEL_BANNER, render_run
from rdm.runs import export_html, list_runs, zip_run
from rdm.runs.compare import run_labels, settings_diff

KEY = "runs"


def overview(runs) -> pd.DataFrame:
    return pd.DataFrame([{  # what tells runs apart first; the long prompt and the id last
        "created": r.created, "modes": ", ".join(m.mode for m in r.modes),
        "best prompt score": max((p for p, _ in (m.mean_scores() for m in r.modes) if p is not None), default=None),
        "seed": r.settings.seed, "backend": r.generator.backend + (" (test model)" if r.test_model else ""),
        "images": sum(len(m.images) for m in r.modes), "prompt": r.prompt, "run": r.id,
    } for r in runs])


def comparison(runs) -> pd.DataFrame:
    """One row per run and mode: mean prompt score and mean score per requirement."""
    rows = []
    for r in runs:
        for m in r.modes:
            prompt, reqs = m.mean_scores()
            rows.append({"run": r.id, "mode": m.mode, "test model": r.test_model, "full prompt": prompt,
                         **dict(zip(r.requirements, reqs))})
    return pd.DataFrame(rows)


def open_run(run) -> None:
    st.subheader(run.prompt if len(run.prompt) <= 120 else run.prompt[:119] + "…", divider="gray")
    row = st.container(horizontal=True, gap="small")
    # The report embeds every image: build it when asked for, not on every rerun of the page.
    row.download_button("Download HTML report", lambda: export_html(run), file_name=f"{run.id}.html",
                        mime="text/html", icon=":material/description:", type="primary",
                        key=f"{KEY}:html:{run.id}", on_click="ignore")
    row.download_button("Download zip (images + metadata)", lambda: zip_run(run), file_name=f"{run.id}.zip",
                        mime="application/zip", icon=":material/folder_zip:", key=f"{KEY}:zip:{run.id}",
                        on_click="ignore")
    report = None
    if st.toggle("Show the HTML report (what stakeholders get)", key=f"{KEY}:preview:{run.id}"):
        with guard("Preparing the report"):
            report = export_html(run)
    if report is not None:
        st.iframe(report, height=1100)
    else:
        render_run(run)


s = settings()
page_header("Runs & report", f"Every generation is saved as a run folder in `{s.runs_dir}`: images with their "
                               "settings and provenance, ready to compare and hand on.")
runs = []
with guard("Listing runs"):
    runs = list_runs(s.runs_dir)
if not runs:
    st.info("No runs yet: generate some on **Generate & compare**.", icon=":material/history:")
    st.page_link(PAGES / "generate.py", label="Go to Generate & compare", icon=":material/auto_awesome:")
    st.stop()

st.dataframe(overview(runs), hide_index=True, width="stretch",
             column_config={"best prompt score": st.column_config.NumberColumn(format="%.3f"),
                            "prompt": st.column_config.TextColumn(width="large")})
by_id = {r.id: r for r in runs}
labels = run_labels(runs)  # distinct: the picker tells its options apart by label
picked = st.multiselect("Open one run, or pick two or more to compare", list(by_id), default=[runs[0].id],
                        format_func=labels.__getitem__, key=f"{KEY}:picked")
if len(picked) == 1:
    open_run(by_id[picked[0]])
elif len(picked) > 1:
    chosen = [by_id[i] for i in picked]
    st.subheader(f"Comparing {len(chosen)} runs", divider="gray")
    if any(r.test_model for r in chosen):
        st.warning(TEST_MODEL_BANNER, icon=":material/science:")
    table = comparison(chosen)
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in table.columns if c not in ("run", "mode", "test model")})
    diffs = settings_diff(chosen)
    if diffs:
        st.markdown(f"**Settings that differ** ({len(diffs)} of everything the runs recorded)")
        st.dataframe(pd.DataFrame([{"setting": d.name, **{r.id: v for r, v in zip(chosen, d.values)}}
                                   for d in diffs]), hide_index=True, width="stretch", key=f"{KEY}:diff")
    else:
        st.markdown("**Same settings in every run** (prompt, generation, model, retrieval, DB): only chance differs.")
    cols = st.columns(len(chosen))
    for col, run in zip(cols, chosen):
        with col:
            st.markdown(f"**{labels[run.id]}**")
            for mode in run.modes:
                first = mode.images[0] if mode.images else None
                path = run.image_path(first) if first is not None else None
                if path is not None and path.is_file():
                    score = f" · prompt {first.prompt_score:.3f}" if first.prompt_score is not None else ""
                    st.image(str(path), width="stretch", caption=f"{mode.mode} · seed {first.seed}{score}")
    st.caption("Open a single run to see all its images and download its report.")
