"""A study on screen: the folder picker shared by the Studies and Blind review pages, and the figures
(per-mode bars with t 95% intervals over prompts, the per-prompt win-rate matrix with p and p_adjusted, the
per-requirement heatmap)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from rdm.errors import RDMError
from rdm.study.run import STUDY_FILE, load_study
from rdm.study.stats import fmt

PICKED = "study:kept:folder"  # not a widget key: the choice survives a visit to another page


def study_folders(root: Path) -> list[Path]:
    """Study folders under ``root`` (any depth of one or two), newest first."""
    found = {p.parent for pattern in (f"*/{STUDY_FILE}", f"*/*/{STUDY_FILE}") for p in root.glob(pattern)}
    return sorted(found, key=lambda p: (p / STUDY_FILE).stat().st_mtime, reverse=True)


def pick_study(root: Path, key: str) -> tuple[Path, dict] | None:
    """A selectbox of the study folders; None (with a hint on how to make one) when there are none."""
    folders = study_folders(root)
    if not folders:
        st.info(f"No studies in `{root}` yet. Run one with `rdm study run dev/pets --out {root}/pets` "
                "(see the README), or point `RDM_STUDIES` at the folder that holds them.", icon=":material/science:")
        return None
    names = [str(f.relative_to(root)) for f in folders]
    widget = f"{key}:folder"
    if widget not in st.session_state:
        kept = st.session_state.get(PICKED)
        st.session_state[widget] = kept if kept in names else names[0]
    name = st.selectbox("Study", names, key=widget)
    st.session_state[PICKED] = name
    try:
        return root / name, load_study(root / name)
    except RDMError as exc:
        st.error(f"**This study cannot be read.** {exc}", icon=":material/error:")
        return None


def metric_label(metric: str) -> str:
    if metric == "fidelity":
        return "reference fidelity (cosine to the plan's references)"
    if metric.endswith("/requirements"):
        return f"{metric.removesuffix('/requirements')}: mean over the requirements"
    return f"{metric}: against the full prompt"


def bars(study: dict, metric: str) -> go.Figure:
    modes = [m for m, row in study["modes"].items()
             if metric in row["scores"] and row["scores"][metric]["mean"] is not None]
    est = [study["modes"][m]["scores"][metric] for m in modes]
    lows = [e["mean"] - e["ci95"][0] if e["ci95"] else 0 for e in est]
    highs = [e["ci95"][1] - e["mean"] if e["ci95"] else 0 for e in est]
    fig = go.Figure(go.Bar(x=modes, y=[e["mean"] for e in est], marker_color="#4c78a8",
                           error_y=dict(type="data", array=highs, arrayminus=lows, visible=True),
                           customdata=[[e["n"], e["images"]] for e in est],
                           hovertemplate="%{x}: %{y:.4g} (n %{customdata[0]} prompts, %{customdata[1]} images)"
                                         "<extra></extra>"))
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=30, b=10),
                      title="mean over prompts with t 95% interval", yaxis_title=metric)
    return fig


def win_matrix(study: dict, metric: str) -> go.Figure:
    """Row mode's win rate against the column mode over prompts (each prompt's seeds averaged first)."""
    modes = list(study["modes"])
    rate = [[None] * len(modes) for _ in modes]
    text = [[""] * len(modes) for _ in modes]
    for p in study["pairs"]:
        if p["scorer"] != metric:
            continue
        i, j = modes.index(p["a"]), modes.index(p["b"])
        rate[i][j], rate[j][i] = p["win_rate"], round(1 - p["win_rate"], 4)
        for r, c in ((i, j), (j, i)):
            text[r][c] = f"{rate[r][c]:.2f}<br>p_adj {fmt(p['p_adjusted'])} · n {p['n']}"
    fig = go.Figure(go.Heatmap(z=rate, x=modes, y=modes, zmin=0, zmax=1, colorscale="RdBu", text=text,
                               texttemplate="%{text}", textfont=dict(size=14),
                               hovertemplate="%{y} vs %{x}: %{text}<extra></extra>"))
    fig.update_layout(height=max(330, 110 * len(modes) + 80), margin=dict(l=10, r=10, t=30, b=10),
                      title="win rate of the row over the column (over prompts)",
                      yaxis=dict(autorange="reversed"))
    return fig


def requirement_heatmap(study: dict, scorer: str) -> go.Figure | None:
    rows = [r for r in study["per_requirement"] if r["scorer"] == scorer]
    if not rows:
        return None
    modes = list(study["modes"])
    labels = list(dict.fromkeys(f"{r['prompt_id']}: {r['requirement']}" for r in rows))
    z = [[None] * len(modes) for _ in labels]
    for r in rows:
        z[labels.index(f"{r['prompt_id']}: {r['requirement']}")][modes.index(r["mode"])] = r["mean"]
    fig = go.Figure(go.Heatmap(z=z, x=modes, y=labels, colorscale="Viridis", texttemplate="%{z:.3g}",
                               hovertemplate="%{y}<br>%{x}: %{z:.4g}<extra></extra>"))
    fig.update_layout(height=max(260, 28 * len(labels) + 80), margin=dict(l=10, r=10, t=30, b=10),
                      title=f"{scorer} per requirement (mean over seeds)", yaxis=dict(autorange="reversed"))
    return fig
