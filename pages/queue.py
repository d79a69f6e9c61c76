"""Queue: every background job (generation, variations, studies, map fits), newest first, with its state,
progress and start, refreshing itself while any is queued or running; cancel a queued or running one,
resume an interrupted or cancelled one (what it finished is reused), retry a failed one."""

from pathlib import Path

import streamlit as st

from dashboard.config import settings
from dashboard.feedback import page_header, show_flashes
from dashboard.jobs_view import cancel, resume_job, start_worker
from rdm.jobs import ACTIVE, JobBook

KEY = "queue"
REFRESH_S = 1.5
SHOWN = 50  # the newest jobs; older ones stay in the jobs folder
KINDS = {"generation": "Generate & compare", "variations": "Variations", "study": "Study", "map": "Embedding map",
         "evaluation": "Retrieval evaluation"}
STATE_BADGE = {"queued": "gray", "running": "blue", "cancelling": "orange", "done": "green", "failed": "red",
               "cancelled": "orange", "interrupted": "violet"}


def job_row(s, job) -> None:
    row = st.container(border=True, horizontal=True, vertical_alignment="center")
    row.markdown(f"**{job.title}**  \n:{STATE_BADGE.get(job.status, 'gray')}-badge[{job.status}] "
                 f":gray[{KINDS.get(job.kind, job.kind)} · by {job.who or 'someone unnamed'} · "
                 f"queued {job.created[:19].replace('T', ' ')} UTC · "
                 f"`{job.id}`]", width=520)
    row.progress(job.fraction, text=f"{job.done}/{job.total} · {job.message}"[:140])
    if job.status in ("queued", "running"):
        row.button("Cancel", key=f"{KEY}:cancel:{job.id}", icon=":material/cancel:", on_click=cancel, args=(s, job.id))
    elif job.status in ("interrupted", "cancelled", "failed"):
        row.button("Retry" if job.status == "failed" else "Resume", key=f"{KEY}:resume:{job.id}",
                   icon=":material/replay:", on_click=resume_job, args=(s, job.id))


s = settings()
page_header("Queue", "Every background job of this dashboard: generations, variations, studies and map fits. "
                     "They run one at a time in the job worker and outlive a reload or a restart.")
jobs = JobBook(s.jobs_dir).jobs() if Path(s.jobs_dir).exists() else []
if not jobs:
    st.info("No jobs yet: **Generate & compare**, **Variations**, **Studies** and the **Embedding map** queue "
            "them here.", icon=":material/queue:")
    st.stop()
if any(j.status == "queued" for j in jobs):
    start_worker(s)  # queued jobs wait for a worker (e.g. after a restart of the machine)


@st.fragment(run_every=REFRESH_S if any(j.status in ACTIVE for j in jobs) else None)
def job_list() -> None:
    current = JobBook(s.jobs_dir).jobs()  # a job whose worker died is marked interrupted here
    waiting = sum(j.status == "queued" for j in current)
    running = sum(j.status in ("running", "cancelling") for j in current)
    st.markdown(f"**{running}** running · **{waiting}** queued · **{len(current)}** in all"
                + (f" (the newest {SHOWN} shown)" if len(current) > SHOWN else ""))
    show_flashes()
    for job in current[:SHOWN]:
        job_row(s, job)


job_list()
