"""The queue (huey, SQLite storage) and the worker process that takes jobs off it.

Submitting writes the job to the book first, then enqueues its id; the worker, one per jobs folder
(a lock file says which), runs each through ``rdm.jobs.tasks.execute``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rdm.errors import BadRequestError
from rdm.jobs.book import (ACTIVE, QUEUE_FILE, STARTING_S, WORKER_LOG, WORKER_PID, Job, JobBook, alive, hold_lock,
                           worker_running)
from rdm.jobs.tasks import execute, study_request


def make_queue(folder: str | Path):
    """The huey queue of a jobs folder and its one task; the dashboard and the worker build the same."""
    from huey import SqliteHuey

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    huey = SqliteHuey(name="rdm-jobs", filename=str(folder / QUEUE_FILE), results=False)

    @huey.task(name="rdm.run_job")
    def run_job(job_id: str) -> None:
        execute(folder, job_id)

    return huey, run_job


def submit_study(folder: str | Path, title: str, payload: dict, out: str | Path, who: str = "") -> Job:
    """Queue a study (``payload``: the fields of ``study_request``'s arguments) into a new ``out`` folder;
    ``who`` (here and in every submit_*) is the name the Queue shows beside the job."""
    out = Path(out)
    if (out / "study.json").exists():
        raise BadRequestError(f"{out} already holds a study: choose another name")
    study_request(payload)  # a bad request is refused now, not in the worker
    return _queue(folder, "study", title, payload, out, who)


def submit_generation(folder: str | Path, title: str, requests: list, runs_dir: str | Path,
                      db: str | Path, kind: str = "generation", who: str = "") -> Job:
    """Queue one or more run requests (``rdm.runs.pipeline.RunRequest``), each saved as a run in ``runs_dir``;
    ``kind`` (generation | variations) tells the page that follows it."""
    if not requests:
        raise BadRequestError("nothing to generate")
    return _queue(folder, kind, title, {"requests": [r.to_dict() for r in requests], "db": str(db)}, Path(runs_dir),
                  who)


def submit_evaluation(folder: str | Path, request, db: str | Path, who: str = "") -> Job:
    """Queue a retrieval evaluation (``rdm.retrieve.eval_runs.EvalRequest``); its results are saved as
    ``<jobs>/evaluations/<job id>.json``."""
    return _queue(folder, "evaluation", f"Evaluating {request.query_set}: {len(request.configurations)} "
                  "configuration(s)", {"request": request.to_dict(), "db": str(db)}, Path(folder) / "evaluations", who)


def submit_map(folder: str | Path, db: str | Path, refit: bool = False, who: str = "") -> Job:
    """Queue a UMAP fit of the DB's map (saved in the DB folder); one already waiting or running is reused."""
    for job in JobBook(folder).jobs() if Path(folder).exists() else []:
        if job.kind == "map" and job.status in ACTIVE and job.payload["db"] == str(db) and job.payload["refit"] >= refit:
            return job
    return _queue(folder, "map", "Fitting the embedding map" + (" afresh" if refit else ""),
                  {"db": str(db), "refit": bool(refit)}, Path(db), who)


def _queue(folder: str | Path, kind: str, title: str, payload: dict, out: Path, who: str) -> Job:
    job = JobBook(folder).add(kind, title, payload, out, who)
    make_queue(folder)[1](job.id)
    return job


def resume(folder: str | Path, job_id: str) -> None:
    book = JobBook(folder)
    book.get(job_id)  # marks a job whose worker died as interrupted; an unknown id is an error
    if not book.requeue(job_id):
        raise BadRequestError(f"job {job_id} is not stopped: only an interrupted, failed or cancelled job resumes")
    make_queue(folder)[1](job_id)


def run_worker(folder: str | Path, workers: int = 1) -> None:
    """The worker process: take jobs off the queue until stopped (``rdm jobs worker``). A second worker
    for the same folder exits at once (the first holds the lock)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    held = hold_lock(folder)
    if held is None:
        raise BadRequestError(f"a job worker already runs for {folder}")
    (folder / WORKER_PID).write_text(str(os.getpid()))
    huey, _ = make_queue(folder)
    try:
        huey.create_consumer(workers=workers, periodic=False, initial_delay=0.2, max_delay=1.0).run()
    finally:
        held.close()


def ensure_worker(folder: str | Path, env: dict[str, str] | None = None) -> int:
    """Start a worker process for ``folder`` unless one is alive; its pid. It outlives the dashboard, so a
    restart of the dashboard does not stop a running job. ``env`` adds to this process's environment
    (the dashboard passes the settings it read from .streamlit/secrets.toml)."""
    folder = Path(folder)
    pid_file = folder / WORKER_PID
    try:
        pid, age = int(pid_file.read_text()), time.time() - pid_file.stat().st_mtime
    except (OSError, ValueError):
        pid, age = 0, float("inf")
    if worker_running(folder) or (age < STARTING_S and alive(pid)):  # running, or started a moment ago
        return pid
    with open(folder / WORKER_LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rdm.cli", "jobs", "worker", "--jobs-dir", str(folder)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not alive(proc.pid):
        time.sleep(0.05)
    return proc.pid
