"""Retrieval evaluation: a labelled query set (bundled split or an uploaded JSONL) run through the chosen
retrieval kinds and modes side by side, as a background job followed query by query; metrics as a table
and a chart, one row per query, why each missed concept was missed (with what was found instead), and the
change since a saved baseline."""

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import state
from dashboard.config import settings
from dashboard.feedback import guard, page_header
from dashboard.jobs_view import adopt, follow, followed, queue_evaluation, report_end
from dashboard.resources import require_store
from dashboard.retrieval_knobs import describe
from rdm.errors import EvaluationError
from rdm.retrieve.baseline import baseline_of, config_key, load_baseline, metric_deltas, query_deltas, save_baseline
from rdm.jobs import evaluation_file
from rdm.retrieve.eval_runs import EvalRequest, load_results
from rdm.retrieve.evaluate import parse_queries
from rdm.retrieve import EVAL_BUDGET, EVAL_MODES, RETRIEVAL_KINDS, Fusion
from rdm.settings import REPO_ROOT

KEY = "evaluation"
RESULTS = f"{KEY}:results"
JOB = f"{KEY}:jobs"  # the evaluation jobs this session follows
UPLOADED = f"{KEY}:uploaded"  # (file name, text) of the last upload: kept when the user curates elsewhere

BUNDLED = {f"{p.parent.name}/{p.stem}": p for p in sorted((REPO_ROOT / "data" / "queries").glob("*/*.jsonl"))}


def main_metric(scores: dict) -> tuple[str, float]:
    """A line's headline score: coverage for a composite prompt, recall for a single concept."""
    name = "coverage" if "coverage" in scores else next(n for n in scores if n.startswith("recall@"))
    return name, scores[name]


def metrics_frame(results) -> pd.DataFrame:
    frame = pd.DataFrame([{"configuration": config_key(r), **r.metrics} for r in results])
    return frame.dropna(axis=1, how="all")


def per_query_frame(results) -> pd.DataFrame:
    rows = {}
    for r in results:
        for o in r.outcomes:
            metric, value = main_metric(o.scores)
            rows.setdefault(o.query, {"query": o.query, "metric": metric})[config_key(r)] = value
    return pd.DataFrame(list(rows.values()))


def show_misses(store, result) -> None:
    missed = [o for o in result.outcomes if o.misses]
    if not missed:
        st.success(f"{config_key(result)}: nothing missed.", icon=":material/check_circle:")
    for o in missed:
        with st.expander(f"{o.query} — missed {', '.join(m.concept for m in o.misses)}"):
            for m in o.misses:
                where = f" (sub-query '{m.subquery}')" if m.subquery else ""
                st.markdown(f"**{m.concept}** · {m.why}{where}")
                if m.best:
                    cells = st.columns(max(len(m.best), 3))
                    for cell, hit in zip(cells, m.best):
                        cell.image(str(store.thumbnail_file(hit.record)), width=110)
                        cell.caption(f"#{hit.id} {hit.record.caption or hit.record.filename} · {hit.explain()}")


def show_baseline(results, baseline, revision: int) -> None:
    st.markdown(f"Compared with the baseline saved {baseline.saved_at.replace('T', ' ')} "
                f"(DB revision {baseline.db_revision}, now {revision}).")
    deltas = metric_deltas(results, baseline)
    if not deltas:
        st.info("The baseline holds none of these configurations: run the ones it was saved with.")
        return
    st.dataframe(pd.DataFrame([{"configuration": d.config, "metric": d.metric, "baseline": d.before,
                                "now": d.after, "change": d.change} for d in deltas]),
                 hide_index=True, key=f"{KEY}:delta",
                 column_config={"change": st.column_config.NumberColumn("Change", format="%+.3f")})
    moved = query_deltas(results, baseline)
    st.markdown(f"**Queries that moved** ({len(moved)})" if moved else "No query's score moved.")
    if moved:
        st.dataframe(pd.DataFrame([{"configuration": d.config, "query": d.name, "metric": d.metric,
                                    "baseline": d.before, "now": d.after, "change": d.change} for d in moved]),
                     hide_index=True, key=f"{KEY}:moved",
                     column_config={"change": st.column_config.NumberColumn("Change", format="%+.3f")})


s = settings()
page_header("Retrieval evaluation", "Labelled query sets scored per retrieval kind and mode at one reference "
                                     "budget: does curating the DB make retrieval find the right photos?")
store = require_store(s)
adopt(s, JOB, "evaluation")  # after a reload, an evaluation still running is followed again
shared = state.retrieval_settings()
# Streamlit drops a page's widget values while another page runs (the user curating in Browse): the
# choices are kept under their own keys and given back to the widgets on return.
choices = {"source": "Bundled", "bundled": "dev/composite" if "dev/composite" in BUNDLED else next(iter(BUNDLED)),
           "kinds": ["image", "hybrid"], "modes": list(EVAL_MODES), "k": shared.k, "budget": EVAL_BUDGET}
for choice, default in choices.items():
    if f"{KEY}:{choice}" not in st.session_state:
        st.session_state[f"{KEY}:{choice}"] = st.session_state.get(f"{KEY}:kept:{choice}", default)

# 1. the query set
source = st.segmented_control("Query set", ["Bundled", "Upload"], key=f"{KEY}:source", required=True)
set_name = None
if source == "Upload":
    upload = st.file_uploader("JSONL query file", type=["jsonl", "json", "txt"], key=f"{KEY}:upload",
                              help='One line per query: {"query", "relevant": [file names or ids]} or '
                                   '{"query", "concepts": [{"name", "relevant"}]}')
    if upload is not None:
        st.session_state[UPLOADED] = (upload.name, upload.getvalue())
    elif UPLOADED in st.session_state:
        st.caption(f"Using **{st.session_state[UPLOADED][0]}**, uploaded earlier.")
    set_name = f"upload:{st.session_state[UPLOADED][0]}" if UPLOADED in st.session_state else None
else:
    set_name = st.selectbox("Bundled set", list(BUNDLED), key=f"{KEY}:bundled",
                            help="The demo DB's labelled sets. dev: what the defaults were tuned on; test: held out")

# 2. what to compare
c1, c2, c3, c4 = st.columns([1.4, 1.8, 0.6, 0.6])
kinds = c1.multiselect("Retrieval", RETRIEVAL_KINDS, key=f"{KEY}:kinds")
modes = c2.multiselect("Modes", EVAL_MODES, key=f"{KEY}:modes")
k = int(c3.number_input("Top-k", 1, 12, key=f"{KEY}:k"))
budget = int(c4.number_input("Budget", 1, 50, key=f"{KEY}:budget",
                             help="Every mode gets this many references, so the comparison is fair"))
for choice in choices:
    st.session_state[f"{KEY}:kept:{choice}"] = st.session_state[f"{KEY}:{choice}"]
st.caption(f"Hybrid: {Fusion().describe()}; the filter's thresholds apply to that score, so a caption that "
           f"names the thing lifts its photo over them. Filter and decomposer from the Retrieval inspector: "
           f"{describe(shared)}.")

if st.button("Run evaluation", type="primary", key=f"{KEY}:run", icon=":material/play_arrow:",
             disabled=not (set_name and kinds and modes),
             help="Queued behind the evaluations already running; each shows here when done" if followed(JOB)
             else None):
    with guard("Queueing the evaluation"):
        if source == "Upload":
            name, data = st.session_state[UPLOADED]
            try:
                lines = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EvaluationError(f"{name} is not UTF-8 text: save it as UTF-8 JSONL") from exc
        else:
            lines = BUNDLED[set_name].read_text(encoding="utf-8")
        parse_queries(lines, set_name, store)  # a bad line is reported now, not by the worker
        request = EvalRequest(set_name, lines, tuple(kinds), tuple(modes), k, budget, shared.decomposer,
                              shared.filters)
        queue_evaluation(s, request, JOB)
        st.rerun()  # the page again, following the new job


def finished(job) -> None:
    """An evaluation job has ended: its results become this session's, or why it did not finish is shown."""
    if job.status == "done":
        with guard("Reading the results"):
            st.session_state[RESULTS] = (job.payload["request"]["query_set"],
                                         load_results(evaluation_file(job), store))
    report_end(job, "Evaluation")


# the background worker runs it, query by query: a reload or another page does not stop it
follow(s, JOB, finished)

stored = st.session_state.get(RESULTS)
if stored is None:
    st.info("Choose a query set and run it.", icon=":material/quiz:")
    st.stop()
evaluated, results = stored

# 3. the metrics, side by side
st.subheader(f"Metrics · {evaluated}", divider="gray")
metrics = metrics_frame(results)
st.dataframe(metrics, hide_index=True, key=f"{KEY}:metrics")
long = metrics.melt(id_vars="configuration", var_name="metric", value_name="value")
st.plotly_chart(px.bar(long, x="metric", y="value", color="configuration", barmode="group", range_y=[0, 1]),
                key=f"{KEY}:chart")

# 4. the baseline: save now, compare after curating
with guard("Comparing with the baseline"):
    baseline = load_baseline(s.runs_dir, evaluated)
    if st.button("Save as baseline", key=f"{KEY}:save", icon=":material/bookmark:",
                 help="Keep these figures; after curating, run again and see the change per metric and query"):
        save_baseline(baseline_of(results, evaluated, store.stats().revision), s.runs_dir)
        st.success("Saved as the baseline of this query set.", icon=":material/bookmark_added:")
    elif baseline is not None:
        show_baseline(results, baseline, store.stats().revision)

# 5. one row per query, and why each miss happened
st.subheader("Per query", divider="gray")
st.dataframe(per_query_frame(results), hide_index=True, key=f"{KEY}:queries")
st.subheader("Misses", divider="gray")
labels = [config_key(r) for r in results]
chosen = st.selectbox("Explain the misses of", labels, index=len(labels) - 1, key=f"{KEY}:explain")
show_misses(store, results[labels.index(chosen)])
