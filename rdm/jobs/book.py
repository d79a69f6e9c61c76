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
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rdm.common.redact import redact
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
  created TEXT NOT NULL, updated TEXT NOT NULL,
  who TEXT NOT NULL DEFAULT ''  -- the name the dashboard's user gave (sidebar), or the CLI's user
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
    who: str = ""  # who queued it

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def alive(pid: int | None) -> bool:
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
            if "who" not in {r["name"] for r in con.execute("PRAGMA table_info(jobs)")}:  # a book from before
                con.execute("ALTER TABLE jobs ADD COLUMN who TEXT NOT NULL DEFAULT ''")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.folder / JOBS_FILE, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def _set(self, job_id: str, **fields) -> None:
        if "message" in fields:  # an error's words, kept and shown: never a secret
            fields["message"] = redact(fields["message"])
        columns = ", ".join(f"{k} = ?" for k in fields)
        with closing(self._connect()) as con, con:
            con.execute(f"UPDATE jobs SET {columns}, updated = ? WHERE id = ?", (*fields.values(), _now(), job_id))

    def add(self, kind: str, title: str, payload: dict, out: Path, who: str = "") -> Job:
        job_id = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
        with closing(self._connect()) as con, con:
            con.execute("INSERT INTO jobs (id, kind, title, payload, status, out, created, updated, who) "
                        "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                        (job_id, kind, title, json.dumps(payload), str(out), _now(), _now(), who.strip()[:80]))
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
                if not alive(row["pid"]) or (no_worker and row["pid"] != os.getpid()):
                    con.execute("UPDATE jobs SET status = 'interrupted', message = 'the worker stopped while it "
                                "ran; resume it to finish (finished runs are kept)', updated = ? WHERE id = ? "
                                "AND status IN ('running', 'cancelling')", (_now(), row["id"]))

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(row["id"], row["kind"], row["title"], row["status"], row["done"], row["total"], row["message"],
                   row["out"], row["created"], row["updated"], json.loads(row["payload"]),
                   tuple(json.loads(row["result"])), row["who"])

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


def hold_lock(folder: Path):
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
    handle = hold_lock(folder)
    if handle is None:
        return True
    handle.close()  # closing releases it
    return False
