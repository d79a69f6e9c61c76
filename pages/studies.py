"""Studies: does retrieval make the images better? Plan one (what difference it can detect), submit it to the
background worker pre-registered, and follow it; then per-mode means over prompts with t 95% intervals, the
win-rate matrix, the pair tests with p and p_adjusted, the per-requirement heatmap, the best and worst images,
and the blind reviewers' ranking."""

import pandas as pd
import streamlit as st

from dashboard.config import settings
from dashboard.feedback import guard, page_header
from dashboard.study_jobs import job_list, submit_form
from dashboard.study_view import bars, metric_label, pick_study, requirement_heatmap, win_matrix
from rdm.study.export import scores_csv
from rdm.study.plan import registration_line
from rdm.study.report import study_html
from rdm.study.stats import fmt
from rdm.study.summary import ScoredImage, metrics_of
from rdm.study.votes import VoteBook, ranking, votes_text

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
    st.markdown(f"**{registration_line(study)}**")
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
        st.caption("Each comparison is over prompts (a prompt's seeds averaged first): n prompts, the image pairs "
                   "behind them, wins/losses/ties by prompt, a two-sided Wilcoxon signed-rank p and p_adjusted "
                   f"({study['analysis']['correction'].title()} across the study's tests); the verdict uses "
                   "p_adjusted, and a pre-registered primary comparison is judged alone.")
        st.dataframe(pd.DataFrame([{"a": p["a"], "b": p["b"], "n (prompts)": p["n"], "images": p["images"],
                                    "wins": p["wins"], "losses": p["losses"], "ties": p["ties"],
                                    "win_rate": p["win_rate"], "mean_difference": fmt(p["mean_difference"]),
                                    "p_value": p["p_value"], "p_adjusted": p["p_adjusted"], "role": p["role"],
                                    "verdict": p["verdict"]}
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
                                  f"{fmt(image.scores[metric])} — {prompts.get(image.prompt_id, '')[:60]}")

        st.subheader("Blind reviewers' ranking", divider="gray")
        votes = VoteBook(folder).votes()
        if not votes:
            st.caption("No votes yet: reviewers vote on the **Blind review** page.")
        else:
            result = ranking(study, votes)
            st.dataframe(pd.DataFrame([{"mode": m, "Bradley-Terry strength": "no votes" if s is None else fmt(s),
                                        "95% low": ci and ci[0], "95% high": ci and ci[1], "wins": result.wins[m],
                                        "ties": result.ties[m]} for m, s, ci in result.ranked()]),
                         hide_index=True, width="stretch")
            st.markdown(votes_text(result, votes))
            st.dataframe(pd.DataFrame([{"metric": m, "agrees with the humans": share, "decided votes": n}
                                       for m, (share, n) in result.metric_agreement.items()]),
                         hide_index=True, width="stretch")
        row = st.container(horizontal=True, gap="small")
        row.download_button("Download the report (HTML)", lambda: study_html(study, folder),
                            file_name=f"{folder.name}-report.html", mime="text/html", icon=":material/description:",
                            on_click="ignore")
        row.download_button("Download every score (CSV)", scores_csv(study), file_name=f"{folder.name}-scores.csv",
                            mime="text/csv", icon=":material/download:", on_click="ignore")
