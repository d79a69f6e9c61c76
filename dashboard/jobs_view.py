"""Background jobs on a page: start the worker when none runs, and follow the jobs the page queued (progress,
cancel) in a fragment that refreshes itself while any waits or runs; a page can queue another while one runs,
and when one ends the page reruns once so its result shows."""

from __future__ import annotations

import os
from typing import Callable

import streamlit as st

from dashboard.config import worker_env
from dashboard.feedback import flash, run_safely, show_flashes
from dashboard.state import user_name
from rdm.jobs import ACTIVE, Job, JobBook, ensure_worker, resume, submit_evaluation, submit_generation, submit_map
from rdm.settings import Settings

REFRESH_S = 1.0


def start_worker(s: Settings) -> None:
    # RDM_JOBS_WORKER=off: a worker is run by hand (`rdm jobs worker`) or by the tests
    if os.environ.get("RDM_JOBS_WORKER", "auto") != "off":
        ensure_worker(s.jobs_dir, env=worker_env(s))


def followed(key: str) -> list[str]:
    """The ids of the jobs this session follows under ``key``, oldest first."""
    return list(st.session_state.get(key) or ())


def _add(key: str, job_id: str) -> None:
    if job_id not in followed(key):
        st.session_state[key] = [*followed(key), job_id]


def queue_generation(s: Settings, title: str, requests: list, key: str, kind: str = "generation") -> None:
    """Queue run requests for the background worker; the session follows the job under ``key`` (with any it
    queued before: they run one after another)."""
    job = submit_generation(s.jobs_dir, title, requests, s.runs_dir, s.db, kind, who=user_name())
    start_worker(s)
    _add(key, job.id)


def queue_map(s: Settings, key: str, refit: bool = False) -> None:
    """Queue a fit of the DB's map for the background worker; the session follows it under ``key``."""
    _add(key, submit_map(s.jobs_dir, s.db, refit, who=user_name()).id)
    start_worker(s)


def queue_evaluation(s: Settings, request, key: str) -> None:
    """Queue a retrieval evaluation for the background worker; the session follows it under ``key``."""
    _add(key, submit_evaluation(s.jobs_dir, request, s.db, who=user_name()).id)
    start_worker(s)


def adopt(s: Settings, key: str, kind: str) -> Job | None:
    """After a reload (a new session) the queued and running jobs of ``kind`` are followed again; returns the
    newest when they were adopted now (the page can show the form it was asked with)."""
    if followed(key) or not s.jobs_dir.exists():
        return None
    running = [j for j in JobBook(s.jobs_dir).jobs() if j.kind == kind and j.status in ACTIVE]
    if not running:
        return None
    st.session_state[key] = [j.id for j in reversed(running)]
    return running[0]


def report_end(job: Job, what: str) -> None:
    """A job that did not finish says so, with its reason and where to resume it, on the next run of the page."""
    if job.status != "done":
        again = "Retry" if job.status == "failed" else "Resume"
        flash("error" if job.status == "failed" else "warning",
              f"**{what} {job.status}.** {job.message} ({again} it on the **Queue** page.)")


def cancel(s: Settings, job_id: str) -> None:
    def work() -> str:
        book = JobBook(s.jobs_dir)
        book.cancel(job_id)
        return ("Cancelled before it started." if book.get(job_id).status == "cancelled" else
                "Cancelling: the job stops at its next step; what it finished is kept.")
    run_safely("Cancelling", work)


def resume_job(s: Settings, job_id: str) -> None:
    def work() -> str:
        resume(s.jobs_dir, job_id)
        start_worker(s)
        return "Queued again: what it finished is kept and reused."
    run_safely("Resuming", work)


def follow(s: Settings, key: str, on_end: Callable[[Job], None]) -> None:
    """Each job followed under ``key``: its progress and a cancel button while it waits or runs; ``on_end(job)``
    once it has ended (it is then followed no more)."""
    if not followed(key):
        return
    book = JobBook(s.jobs_dir)
    active = any(book.get(job_id).status in ACTIVE for job_id in followed(key))

    @st.fragment(run_every=REFRESH_S if active else None)
    def draw() -> None:
        ended = False
        for job in [JobBook(s.jobs_dir).get(job_id) for job_id in followed(key)]:  # a dead worker: interrupted
            if job.status == "queued":
                start_worker(s)  # e.g. the worker was stopped while the job waited
            if job.status in ACTIVE:
                row = st.container(horizontal=True, vertical_alignment="center")
                row.progress(job.fraction, text=f"{job.title} · {job.status} · {job.message}"[:140])
                row.button("Cancel", key=f"{key}:cancel:{job.id}", icon=":material/cancel:", on_click=cancel,
                           args=(s, job.id))
                continue
            st.session_state[key] = [i for i in followed(key) if i != job.id]
            on_end(job)
            ended = True
        if ended:
            st.rerun()  # once: the page draws the result, the messages on_end flashed and its buttons afresh
        show_flashes()
    draw()
