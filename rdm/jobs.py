"""Background jobs: studies, generation runs and map fits in a worker process, not in the dashboard's script.

huey (SQLite storage, ``<jobs>/queue.sqlite``) carries the queue; ``<jobs>/jobs.sqlite`` keeps what a user
sees of each job: what was asked, its status, progress, message, result folder and the pid of the worker
running it. Both are files, so a page reload or a dashboard restart loses no job. A job whose worker died
is marked ``interrupted`` and can be resumed: the study reuses the runs it had finished. Cancelling asks
the running job to stop at its next step (a queued one is revoked and never starts).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rdm.errors import BadRequestError, RDMError

QUEUE_FILE, JOBS_FILE, WORKER_PID, WORKER_LOG, WORKER_LOCK = ("queue.sqlite", "jobs.sqlite", "worker.pid",
                                                            "worker.log", "worker.lock")
ACTIVE = ("queued", "running", "cancelling")
STARTING_S = 30  # a worker started this recently may not hold its lock yet (Python and torch are loading)
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, title TEXT NOT NULL, payload TEXT NOT NULL,
  status TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
  message TEXT NOT NULL DEFAULT '', out TEXT NOT NULL, pid INTEGER,
  result TEXT NOT NULL DEFAULT '[]',  -- generation: the ids of the runs saved so far
  created TEXT NOT NULL, updated TEXT NOT NULL
);
"""


class JobCancelled(RDMError):
    """The user cancelled the job; what it finished is kept."""


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    title: str
    status: str  # queued | running | cancelling | done | failed | cancelled | interrupted
    done: int
    total: int
    message: str
    out: str
    created: str
    updated: str
    payload: dict
    result: tuple[str, ...] = ()  # generation: the saved runs' ids, in request order

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobBook:
    """The jobs of one jobs folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con, con:
            con.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.folder / JOBS_FILE, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def _set(self, job_id: str, **fields) -> None:
        columns = ", ".join(f"{k} = ?" for k in fields)
        with closing(self._connect()) as con, con:
            con.execute(f"UPDATE jobs SET {columns}, updated = ? WHERE id = ?", (*fields.values(), _now(), job_id))

    def add(self, kind: str, title: str, payload: dict, out: Path) -> Job:
        job_id = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
        with closing(self._connect()) as con, con:
            con.execute("INSERT INTO jobs (id, kind, title, payload, status, out, created, updated) "
                        "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                        (job_id, kind, title, json.dumps(payload), str(out), _now(), _now()))
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        """The job; one marked running whose worker is gone is marked interrupted first."""
        self._mark_interrupted()
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise BadRequestError(f"no job {job_id!r} in {self.folder}")
        return self._job(row)

    def jobs(self) -> list[Job]:
        """Every job, newest first; running jobs whose worker is gone are marked interrupted first."""
        self._mark_interrupted()
        with closing(self._connect()) as con:
            return [self._job(r) for r in con.execute("SELECT * FROM jobs ORDER BY created DESC, id DESC")]

    def _mark_interrupted(self) -> None:
        with closing(self._connect()) as con, con:
            rows = con.execute("SELECT id, pid FROM jobs WHERE status IN ('running', 'cancelling')").fetchall()
            # a job runs in this process (a worker thread here), or in a worker holding the lock: a pid alone
            # can be another program's after a reboot
            others = [r for r in rows if r["pid"] != os.getpid()]
            no_worker = bool(others) and not worker_running(self.folder)
            for row in rows:
                if not _alive(row["pid"]) or (no_worker and row["pid"] != os.getpid()):
                    con.execute("UPDATE jobs SET status = 'interrupted', message = 'the worker stopped while it "
                                "ran; resume it to finish (finished runs are kept)', updated = ? WHERE id = ? "
                                "AND status IN ('running', 'cancelling')", (_now(), row["id"]))

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(row["id"], row["kind"], row["title"], row["status"], row["done"], row["total"], row["message"],
                   row["out"], row["created"], row["updated"], json.loads(row["payload"]),
                   tuple(json.loads(row["result"])))

    def _move(self, job_id: str, before: tuple[str, ...], **fields) -> bool:
        """Set ``fields`` only if the job's status is one of ``before``, in one statement: a cancel and a
        worker taking the job cannot both win."""
        columns = ", ".join(f"{k} = ?" for k in fields)
        marks = ", ".join("?" * len(before))
        with closing(self._connect()) as con, con:
            return con.execute(f"UPDATE jobs SET {columns}, updated = ? WHERE id = ? AND status IN ({marks})",
                               (*fields.values(), _now(), job_id, *before)).rowcount == 1

    def start(self, job_id: str) -> bool:
        """Take a queued job for this process; False when it was cancelled (or taken) meanwhile."""
        return self._move(job_id, ("queued",), status="running", pid=os.getpid(), message="starting")

    def progress(self, job_id: str, done: int, total: int, message: str) -> None:
        """Record progress; raises JobCancelled once the user has asked the job to stop."""
        if self.get(job_id).status == "cancelling":
            raise JobCancelled(f"job {job_id} was cancelled")
        self._set(job_id, done=done, total=total, message=message)

    def saved_run(self, job_id: str, run_id: str) -> None:
        self._set(job_id, result=json.dumps([*self.get(job_id).result, run_id]))

    def finished(self, job_id: str, status: str, message: str) -> None:
        self._set(job_id, status=status, message=message, pid=None)

    def cancel(self, job_id: str) -> None:
        if not self._move(job_id, ("queued",), status="cancelled", message="cancelled before it started"):
            self._move(job_id, ("running",), status="cancelling", message="stopping at the next step")

    def requeue(self, job_id: str) -> bool:
        return self._move(job_id, ("interrupted", "failed", "cancelled"), status="queued", message="queued again",
                          pid=None)

    def last_step(self, job_id: str, done: int, total: int, message: str) -> None:
        """The final progress line: a cancel arriving now is too late to stop anything."""
        self._set(job_id, done=done, total=total, message=message)


# --- the queue (huey) and the work ---


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


def submit_study(folder: str | Path, title: str, payload: dict, out: str | Path) -> Job:
    """Queue a study (``payload``: the fields of ``study_request``'s arguments) into a new ``out`` folder."""
    out = Path(out)
    if (out / "study.json").exists():
        raise BadRequestError(f"{out} already holds a study: choose another name")
    study_request(payload)  # a bad request is refused now, not in the worker
    return _queue(folder, "study", title, payload, out)


def submit_generation(folder: str | Path, title: str, requests: list, runs_dir: str | Path,
                      db: str | Path, kind: str = "generation") -> Job:
    """Queue one or more run requests (``rdm.request.RunRequest``), each saved as a run in ``runs_dir``;
    ``kind`` (generation | variations) tells the page that follows it."""
    if not requests:
        raise BadRequestError("nothing to generate")
    return _queue(folder, kind, title, {"requests": [r.to_dict() for r in requests], "db": str(db)}, Path(runs_dir))


def submit_map(folder: str | Path, db: str | Path, refit: bool = False) -> Job:
    """Queue a UMAP fit of the DB's map (saved in the DB folder); one already waiting or running is reused."""
    for job in JobBook(folder).jobs() if Path(folder).exists() else []:
        if job.kind == "map" and job.status in ACTIVE and job.payload["db"] == str(db) and job.payload["refit"] >= refit:
            return job
    return _queue(folder, "map", "Fitting the embedding map" + (" afresh" if refit else ""),
                  {"db": str(db), "refit": bool(refit)}, Path(db))


def _queue(folder: str | Path, kind: str, title: str, payload: dict, out: Path) -> Job:
    job = JobBook(folder).add(kind, title, payload, out)
    make_queue(folder)[1](job.id)
    return job


def resume(folder: str | Path, job_id: str) -> None:
    book = JobBook(folder)
    book.get(job_id)  # marks a job whose worker died as interrupted; an unknown id is an error
    if not book.requeue(job_id):
        raise BadRequestError(f"job {job_id} is not stopped: only an interrupted, failed or cancelled job resumes")
    make_queue(folder)[1](job_id)


def study_request(payload: dict):
    from rdm.generate import GenerationSettings
    from rdm.modes import Fusion, RetrievalSettings
    from rdm.study.run import StudyRequest
    from rdm.study.suite import load_suite

    return StudyRequest(load_suite(payload["suite"]), tuple(payload["modes"]), seeds=int(payload["seeds"]),
                        n=int(payload.get("n", 1)), candidates=int(payload.get("candidates", 1)),
                        scorers=tuple(payload["scorers"]), backend=payload["backend"],
                        variation_strength=payload.get("variation_strength"),
                        settings=GenerationSettings(**payload.get("settings", {})),
                        retrieval=RetrievalSettings(k=int(payload.get("k", RetrievalSettings.k)),
                                                    fusion=Fusion(payload.get("fusion", Fusion.kind))))


def execute(folder: str | Path, job_id: str) -> None:
    """Run one job in this process (the worker's task), recording its progress and outcome."""
    book = JobBook(folder)
    if not book.start(job_id):
        return  # cancelled while it waited, or already taken
    job = book.get(job_id)
    try:
        message = {"study": _study, "map": _map}.get(job.kind, _generation)(book, job)
    except JobCancelled:
        book.finished(job_id, "cancelled", "cancelled; what it finished is kept and a resume reuses it")
    except RDMError as exc:
        book.finished(job_id, "failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug: recorded with its type, the worker goes on
        book.finished(job_id, "failed", f"internal error ({type(exc).__name__}: {exc}); see {WORKER_LOG}")
        raise
    else:
        book.finished(job_id, "done", message)


def _store_and_settings(job: Job):
    from rdm.db import ImageStore
    from rdm.settings import load_settings

    settings = load_settings(db=job.payload.get("db"))
    return ImageStore.open(settings.db), settings


def _study(book: JobBook, job: Job) -> str:
    from rdm.generate import generator_factories
    from rdm.study.run import run_study

    request = study_request(job.payload)
    store, settings = _store_and_settings(job)
    run_study(request, store=store, generator=generator_factories(settings, request.backend), out=job.out,
              progress=lambda done, total, what: book.progress(job.id, done, total, what))
    return f"study saved in {job.out}"


def _generation(book: JobBook, job: Job) -> str:
    """Each request in turn, each saved as a run as soon as it is done; a resume skips the saved ones."""
    from rdm.decompose import LLMConfig
    from rdm.generate import made_once, make_generator
    from rdm.request import RunRequest, run_request

    requests = [RunRequest.from_dict(r) for r in job.payload["requests"]]
    store, settings = _store_and_settings(job)
    generator = made_once(lambda: make_generator(settings, requests[0].backend))  # one backend per job
    saved = list(job.result)
    for n, request in enumerate(requests):
        if n < len(saved):
            continue
        record = run_request(
            request, store=store, runs_dir=job.out, llm=LLMConfig.from_settings(settings),
            generator=generator,
            progress=lambda mode, stage, i, total, n=n: book.progress(
                job.id, n, len(requests), f"request {n + 1}/{len(requests)}: {mode} {stage} {i}/{total}"))
        book.saved_run(job.id, record.id)
        saved.append(record.id)
        (book.last_step if n + 1 == len(requests) else book.progress)(job.id, n + 1, len(requests),
                                                                       f"saved run {record.id}")
    return f"{len(saved)} run(s) saved: {', '.join(saved)}"


def _map(book: JobBook, job: Job) -> str:
    from rdm.map_layouts import map_layout

    store, _ = _store_and_settings(job)
    book.progress(job.id, 0, 1, f"fitting UMAP over {store.stats().live:,} images")  # a cancel stops it here
    return map_layout(store, refit=job.payload["refit"]).note


def _lock(folder: Path):
    """The worker's lock file, held (flock) for as long as a worker runs: a pid alone can be reused."""
    handle = open(folder / WORKER_LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def worker_running(folder: str | Path) -> bool:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = _lock(folder)
    if handle is None:
        return True
    handle.close()  # closing releases it
    return False


def run_worker(folder: str | Path, workers: int = 1) -> None:
    """The worker process: take jobs off the queue until stopped (``rdm jobs worker``). A second worker
    for the same folder exits at once (the first holds the lock)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    held = _lock(folder)
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
    if worker_running(folder) or (age < STARTING_S and _alive(pid)):  # running, or started a moment ago
        return pid
    with open(folder / WORKER_LOG, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rdm.cli", "jobs", "worker", "--jobs-dir", str(folder)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not _alive(proc.pid):
        time.sleep(0.05)
    return proc.pid
