"""Studies: does retrieval make the images better? Submit one to the background worker and follow it; then
per-mode means with 95% intervals, the win-rate matrix, the per-requirement heatmap, the best and worst
images, and the blind reviewers' ranking."""

import pandas as pd
import streamlit as st

from dashboard.config import settings
from dashboard.feedback import guard, page_header
from dashboard.study_jobs import job_list, submit_form
from dashboard.study_view import bars, metric_label, pick_study, requirement_heatmap, win_matrix
from rdm.study.export import scores_csv
from rdm.study.report import study_html
from rdm.study.summary import ScoredImage, metrics_of
from rdm.study.votes import VoteBook, ranking

KEY = "studies"
EXAMPLES = 3

page_header("Studies", "Every prompt of a suite in every mode with the same seeds, judged by scorers that did not "
                       "choose the references. Submit one here (it runs in the background) or with `rdm study run`.")
submit_form(settings())
job_list(settings())
picked = pick_study(settings().studies_dir, KEY)
if picked is not None:
    folder, study = picked
    r = study["request"]
    st.caption(f"{len(study['suite'])} prompt(s) × {len(study['modes'])} modes × {r['seeds'] * r['n']} seed(s)"
               + (f" · best of {r['candidates']}" if r["candidates"] > 1 else "")
               + f" · scorers {', '.join(study['scorers'])} · backend {r['backend']}"
               + f" · created {study['created'][:16]}")
    if study.get("test_model"):
        st.warning("**TEST MODEL**: tiny random-weight models made or judged these images; the numbers only show "
                   "that the pipeline runs.", icon=":material/science:")
    for note in study["notes"]:
        st.info(note, icon=":material/info:")
    images = [ScoredImage.from_dict(i) for i in study["images"]]
    metrics = metrics_of([i for i in images if i.kept])
    metric = st.selectbox("Metric", metrics, format_func=metric_label, key=f"{KEY}:metric")

    with guard("Drawing the study"):
        left, right = st.columns(2)
        left.plotly_chart(bars(study, metric), key=f"{KEY}:bars")
        right.plotly_chart(win_matrix(study, metric), key=f"{KEY}:wins")
        st.dataframe(pd.DataFrame([{k: p[k] for k in ("a", "b", "n", "wins", "losses", "ties", "win_rate",
                                                       "mean_difference", "p_value", "sign_p", "verdict")}
                                   for p in study["pairs"] if p["scorer"] == metric]),
                     hide_index=True, width="stretch")
        scorer = metric.removesuffix("/requirements")
        heat = requirement_heatmap(study, scorer) if scorer in study["scorers"] else None
        if heat is not None:
            st.plotly_chart(heat, key=f"{KEY}:heat")

        st.subheader("Best and worst images", divider="gray")
        ranked = sorted((i for i in images if i.kept and metric in i.scores), key=lambda i: -i.scores[metric])
        prompts = {p["id"]: p["prompt"] for p in study["suite"]}
        for title, chosen in (("Best", ranked[:EXAMPLES]), ("Worst", ranked[-EXAMPLES:][::-1])):
            st.markdown(f"**{title} by {metric}**")
            cols = st.columns(EXAMPLES)
            for col, image in zip(cols, chosen):
                col.image(str(folder / image.file), width="stretch",
                          caption=f"{image.mode} · {image.prompt_id} · seed {image.seed} · "
                                  f"{image.scores[metric]:.4f} — {prompts.get(image.prompt_id, '')[:60]}")

        st.subheader("Blind reviewers' ranking", divider="gray")
        votes = VoteBook(folder).votes()
        if not votes:
            st.caption("No votes yet: reviewers vote on the **Blind review** page.")
        else:
            result = ranking(study, votes)
            st.dataframe(pd.DataFrame([{"mode": m, "Bradley-Terry strength": s, "95% low": lo, "95% high": hi,
                                        "wins": result.wins[m]}
                                       for m, s, (lo, hi) in sorted(zip(result.modes, result.strength, result.ci95),
                                                                    key=lambda row: -row[1])]),
                         hide_index=True, width="stretch")
            counts = ", ".join(f"{n} {c}" for c, n in result.counts.items())
            agreement = (f"reviewers agreed on {result.agreement:.0%} of {result.agreement_pairs} doubly reviewed "
                         "pairs" if result.agreement is not None else "no pair was reviewed twice yet")
            st.markdown(f"**{len(votes)}** vote(s) from {len({v['reviewer'] for v in votes})} reviewer(s): "
                        f"{counts}; {agreement}.")
            st.dataframe(pd.DataFrame([{"metric": m, "agrees with the humans": share, "decided votes": n}
                                       for m, (share, n) in result.metric_agreement.items()]),
                         hide_index=True, width="stretch")
        row = st.container(horizontal=True, gap="small")
        row.download_button("Download the report (HTML)", lambda: study_html(study, folder),
                            file_name=f"{folder.name}-report.html", mime="text/html", icon=":material/description:",
                            on_click="ignore")
        row.download_button("Download every score (CSV)", scores_csv(study), file_name=f"{folder.name}-scores.csv",
                            mime="text/csv", icon=":material/download:", on_click="ignore")
