"""Submitting a study to the background worker and following its jobs: the form with its planner (what
difference the study can detect, from a pilot's per-prompt variance), pre-registered on submission, and a job
list that refreshes itself while anything runs (a fragment: only it reruns), with cancel and resume."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from dashboard.feedback import flash, run_safely
from dashboard.jobs_view import cancel, resume_job, start_worker
from dashboard.state import user_name
from dashboard.study_view import study_folders
from rdm.errors import RDMError
from rdm.generate import GenerationSettings
from rdm.generate.tiny import TEST_MODEL_SETTINGS
from rdm.jobs import ACTIVE, JobBook, study_request, submit_study
from rdm.retrieve import MODES
from rdm.settings import Settings
from rdm.study.plan import write_plan
from rdm.study.request import DEFAULT_MODES
from rdm.study.run import load_study
from rdm.study.stats import ALPHA, fmt
from rdm.study.suite import bundled_suites, load_suite

KEY = "studyjobs"
SCORERS = ("clip", "vqa", "clip:tiny", "vqa:tiny")
REFRESH_S = 1.5  # the job list; one followed job refreshes faster (jobs_view)


def _submit(s: Settings) -> None:
    state = st.session_state
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", (state.get(f"{KEY}:name") or "").strip()).strip("-.")

    def work() -> str | None:
        if not name:
            flash("warning", "Give the study a name: it becomes its folder.")
            return None
        upload = state.get(f"{KEY}:upload")
        if state.get(f"{KEY}:source") == "Upload":
            if upload is None:
                flash("warning", "Upload a JSONL suite, or pick a bundled one.")
                return None
            suite = s.jobs_dir / "suites" / f"{name}.jsonl"
            suite.parent.mkdir(parents=True, exist_ok=True)
            suite.write_bytes(upload.getvalue())
        else:
            suite = state.get(f"{KEY}:suite")
        payload = {"suite": str(suite), "db": str(s.db), "modes": list(state.get(f"{KEY}:modes") or ()),
                   "seeds": int(state.get(f"{KEY}:seeds", 3)), "n": int(state.get(f"{KEY}:n", 1)),
                   "candidates": int(state.get(f"{KEY}:candidates", 1)),
                   "scorers": list(state.get(f"{KEY}:scorers") or ()), "backend": state.get(f"{KEY}:backend"),
                   "settings": {"steps": int(state.get(f"{KEY}:steps", form_defaults(s).steps)),
                                "size": [int(state.get(f"{KEY}:size", form_defaults(s).size[0]))] * 2}}
        # registered before the job exists: the worker's run checks itself against this plan
        plan = write_plan(s.studies_dir / name, study_request(payload), (state.get(f"{KEY}:primary") or "").strip()
                          or None, float(state.get(f"{KEY}:alpha", ALPHA)))
        job = submit_study(s.jobs_dir, name, payload, s.studies_dir / name, who=user_name())
        start_worker(s)
        return (f"Queued the study **{name}** (job {job.id}), pre-registered at {plan.created}; it runs in the "
                "background worker.")
    run_safely("Submitting the study", work)


def submit_form(s: Settings) -> None:
    with st.expander("Run a new study", icon=":material/play_circle:"):
        c1, c2 = st.columns(2)
        c1.text_input("Name (its folder)", key=f"{KEY}:name", placeholder="pets-baseline")
        source = c2.segmented_control("Suite", ["Bundled", "Upload"], default="Bundled", required=True,
                                      key=f"{KEY}:source")
        if source == "Upload":
            c2.file_uploader("A JSONL suite", type=["jsonl", "json"], key=f"{KEY}:upload")
        else:
            c2.selectbox("Bundled suite", bundled_suites(), key=f"{KEY}:suite",
                         help="dev/: tune on it; test/: judge on it, never tune")
        st.multiselect("Modes (the same seeds in each)", list(MODES), default=list(DEFAULT_MODES), key=f"{KEY}:modes")
        c3, c4, c5, c6, c9 = st.columns(5)
        c3.number_input("Seeds", 1, 16, 3, key=f"{KEY}:seeds")
        c4.number_input("Images per seed", 1, 4, 1, key=f"{KEY}:n")
        c5.number_input("Best of N candidates", 1, 9, 1, key=f"{KEY}:candidates",
                        help="Keep the candidate with the best mean VQAScore over the requirements")
        c6.number_input("Steps", 2, 150, form_defaults(s).steps, key=f"{KEY}:steps")
        c9.number_input("Size (px, square)", 64, 1024, form_defaults(s).size[0], 64, key=f"{KEY}:size")
        c7, c8 = st.columns([2, 1])
        test = s.backend == "tiny"  # the test backend's noise is judged by the test scorers unless changed
        c7.multiselect("Scorers", list(SCORERS), default=["clip:tiny", "vqa:tiny"] if test else ["clip", "vqa"],
                       key=f"{KEY}:scorers",
                       help="clip: open_clip ViT-L-14; vqa: BLIP VQA (VQAScore); :tiny: random-weight test models")
        c8.selectbox("Backend", ["local", "remote", "tiny"], index=["local", "remote", "tiny"].index(s.backend)
                     if s.backend in ("local", "remote", "tiny") else 0, key=f"{KEY}:backend")
        c10, c11 = st.columns([2, 1])
        c10.text_input("Primary comparison (optional)", key=f"{KEY}:primary", placeholder="subquery+filter:none:vqa",
                       help="MODE_A:MODE_B:METRIC, fixed before any image exists: judged at the full level, every "
                            "other comparison is exploratory (Holm-corrected)")
        c11.number_input("Level (alpha)", 0.001, 0.2, ALPHA, 0.01, key=f"{KEY}:alpha", format="%.3f")
        planner(s, _suite_size(s), int(st.session_state.get(f"{KEY}:seeds", 3)))
        st.button("Submit the study", type="primary", icon=":material/send:", key=f"{KEY}:submit",
                  on_click=_submit, args=(s,))


def form_defaults(s: Settings) -> GenerationSettings:
    """The steps and size a new study starts from: the tiny test backend's own (50 steps at 768 px of random
    weights only take long), else the generation defaults."""
    return TEST_MODEL_SETTINGS if s.backend == "tiny" else GenerationSettings()


def _suite_size(s: Settings) -> int | None:
    """The prompts of the suite picked in the form (None: an upload not made yet, or a bad suite)."""
    state = st.session_state
    try:
        if state.get(f"{KEY}:source") == "Upload":
            upload = state.get(f"{KEY}:upload")
            return sum(1 for line in upload.getvalue().decode("utf-8").splitlines() if line.strip()) if upload else None
        return len(load_suite(state.get(f"{KEY}:suite") or bundled_suites()[0]))
    except (RDMError, UnicodeDecodeError):
        return None


@st.cache_data(show_spinner=False, max_entries=64)
def _detectable(folder: str, changed: float, prompts: int, seeds: int, alpha: float, target: float):
    """(pilot variance, detectable difference): simulated, so kept per pilot version and plan."""
    from rdm.study.power import detectable_effect, pilot_variance

    variance = pilot_variance(load_study(folder))
    return variance, detectable_effect(variance, prompts, seeds, alpha, target)


def planner(s: Settings, prompts: int | None, seeds: int) -> None:
    """Before submitting: the smallest difference this many prompts and seeds detect at the chosen power."""
    st.markdown("**Planner**: how big a difference can this study detect?")
    folders = study_folders(Path(s.studies_dir))
    if not folders:
        st.caption("Run a small pilot first (3-5 prompts): the planner reads how much the mode effect varies between "
                   "its prompts and seeds, then simulates studies of this size (or `rdm study power PILOT --effect "
                   "0.02` says how many prompts a difference needs).")
        return
    c1, c2 = st.columns([2, 1])
    names = [str(f.relative_to(s.studies_dir)) for f in folders]
    pilot = c1.selectbox("Pilot study", names, key=f"{KEY}:pilot")
    target = c2.number_input("Power", 0.5, 0.99, 0.8, 0.05, key=f"{KEY}:power")
    # a toggle, not a button: the estimate stays on screen (cached) while the form is edited
    if not st.toggle("Estimate what it can detect", key=f"{KEY}:estimate",
                     help="Simulates a few thousand studies of this size through the study's own analysis"):
        return
    if not prompts:
        st.warning("Pick a suite (or upload one) first: the planner needs its number of prompts.")
        return
    folder, alpha = Path(s.studies_dir) / pilot, float(st.session_state.get(f"{KEY}:alpha", ALPHA))
    try:
        with st.spinner("Simulating studies of this size..."):
            v, effect = _detectable(str(folder), (folder / "study.json").stat().st_mtime, prompts, seeds, alpha,
                                    float(target))
    except RDMError as exc:
        st.error(f"**The planner cannot use {pilot}.** {exc}", icon=":material/error:")
        return
    if effect is None:
        st.warning(f"With {prompts} prompts no test can reach p < {alpha}: add prompts (more seeds do not help).")
    else:
        st.info(f"With {prompts} prompts × {seeds} seed(s) you can detect a difference of **{fmt(effect)}** in "
                f"{v.metric} ({v.a} vs {v.b}) at {target:.0%} power (alpha {alpha}, as the primary comparison), from "
                f"{pilot}'s per-prompt variance (between prompts SD {fmt(v.prompt_sd)}, between seeds SD "
                f"{fmt(v.seed_sd)})." + (f" Note: {v.caveat}." if v.caveat else ""), icon=":material/query_stats:")


def job_list(s: Settings) -> None:
    """The study jobs, refreshing every REFRESH_S seconds while one is queued or running."""
    jobs = [j for j in JobBook(s.jobs_dir).jobs() if j.kind == "study"] if Path(s.jobs_dir).exists() else []
    active = any(j.status in ACTIVE for j in jobs)
    if any(j.status == "queued" for j in jobs):
        start_worker(s)  # e.g. after a restart of the machine: queued jobs wait for a worker

    @st.fragment(run_every=REFRESH_S if active else None)
    def draw() -> None:
        current = [j for j in JobBook(s.jobs_dir).jobs() if j.kind == "study"] if jobs else []
        if not current:
            return
        st.markdown("**Study jobs**")
        for job in current[:10]:
            row = st.container(border=True, horizontal=True, vertical_alignment="center")
            row.markdown(f"**{job.title}** · {job.status}")
            row.progress(job.fraction, text=f"{job.done}/{job.total} · {job.message}"[:120])
            if job.status in ("queued", "running"):
                row.button("Cancel", key=f"{KEY}:cancel:{job.id}", icon=":material/cancel:", on_click=cancel,
                           args=(s, job.id))
            elif job.status in ("interrupted", "failed", "cancelled"):
                row.button("Resume", key=f"{KEY}:resume:{job.id}", icon=":material/replay:", on_click=resume_job,
                           args=(s, job.id))
        if active and not any(j.status in ACTIVE for j in current):
            st.rerun()  # the last job finished: the whole page, so its study shows in the picker
    draw()
