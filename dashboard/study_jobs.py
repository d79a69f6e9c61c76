"""Submitting a study to the background worker and following its jobs: the form, and a job list that
refreshes itself while anything runs (a fragment: only it reruns), with cancel and resume."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from dashboard.feedback import flash, run_safely
from dashboard.jobs_view import cancel, start_worker
from rdm.jobs import ACTIVE, JobBook, resume, submit_study
from rdm.retrieve import MODES
from rdm.settings import Settings
from rdm.study.run import DEFAULT_MODES
from rdm.study.suite import bundled_suites

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
                   "settings": {"steps": int(state.get(f"{KEY}:steps", 50)),
                                "size": [int(state.get(f"{KEY}:size", 768))] * 2}}
        job = submit_study(s.jobs_dir, name, payload, s.studies_dir / name)
        start_worker(s)
        return f"Queued the study **{name}** (job {job.id}); it runs in the background worker."
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
        c6.number_input("Steps", 2, 150, 50, key=f"{KEY}:steps")
        c9.number_input("Size (px, square)", 64, 1024, 768, 64, key=f"{KEY}:size")
        c7, c8 = st.columns([2, 1])
        test = s.backend == "tiny"  # the test backend's noise is judged by the test scorers unless changed
        c7.multiselect("Scorers", list(SCORERS), default=["clip:tiny", "vqa:tiny"] if test else ["clip", "vqa"],
                       key=f"{KEY}:scorers",
                       help="clip: open_clip ViT-L-14; vqa: BLIP VQA (VQAScore); :tiny: random-weight test models")
        c8.selectbox("Backend", ["local", "remote", "tiny"], index=["local", "remote", "tiny"].index(s.backend)
                     if s.backend in ("local", "remote", "tiny") else 0, key=f"{KEY}:backend")
        st.button("Submit the study", type="primary", icon=":material/send:", key=f"{KEY}:submit",
                  on_click=_submit, args=(s,))


def _resume(s: Settings, job_id: str) -> None:
    def work() -> str:
        resume(s.jobs_dir, job_id)
        start_worker(s)
        return "Queued again: finished runs are reused."
    run_safely("Resuming", work)


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
                row.button("Resume", key=f"{KEY}:resume:{job.id}", icon=":material/replay:", on_click=_resume,
                           args=(s, job.id))
        if active and not any(j.status in ACTIVE for j in current):
            st.rerun()  # the last job finished: the whole page, so its study shows in the picker
    draw()
