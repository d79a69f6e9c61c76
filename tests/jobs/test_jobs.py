"""Background jobs on huey: a study submitted, run by a worker, its progress and result recorded; a cancel
stops it at its next step; a job whose worker died is marked interrupted and resumes with its finished runs."""

import json
import os
import signal
import time

import pytest

from rdm.jobs import JobBook, WORKER_PID, ensure_worker, make_queue, resume, submit_study
from rdm.errors import BadRequestError
from rdm.study.run import load_study

FAST = {"steps": 2, "prior_steps": 2, "size": [64, 64]}


def payload(suite, seeds=2):
    return {"suite": str(suite), "modes": ["none", "full"], "seeds": seeds, "scorers": ["clip:tiny", "vqa:tiny"],
            "backend": "tiny", "settings": FAST}


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{n}", "prompt": text}) + "\n"
                            for n, text in enumerate(["a dog on a sofa", "a cat with a toy", "a red collar"])))
    return path


@pytest.fixture
def jobs(tmp_path, tiny_db, monkeypatch):
    monkeypatch.setenv("RDM_DB", str(tiny_db))
    return tmp_path / "jobs"


@pytest.fixture
def consumer(jobs):
    """A worker in this process (threads), as `rdm jobs worker` runs one."""
    huey, _ = make_queue(jobs)
    worker = huey.create_consumer(workers=1, periodic=False, initial_delay=0.05, max_delay=0.2)
    worker.start()
    yield
    worker.stop(graceful=True)


def wait_for(book, job_id, statuses, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = book.get(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {book.get(job_id).status}")


def test_a_submitted_study_runs_in_the_worker_and_records_progress(jobs, suite, tmp_path, consumer):
    job = submit_study(jobs, "pets", payload(suite), tmp_path / "studies" / "pets")
    assert job.status == "queued"
    book = JobBook(jobs)
    done = wait_for(book, job.id, ("done", "failed"))
    assert done.status == "done", done.message
    assert done.done == done.total == 6 and "study saved" in done.message
    study = load_study(tmp_path / "studies" / "pets")
    assert set(study["modes"]) == {"none", "full"} and len(study["runs"]) == 3
    assert JobBook(jobs).jobs()[0].status == "done"  # a new handle (a reload) sees the same
    with pytest.raises(BadRequestError, match="already holds a study"):
        submit_study(jobs, "again", payload(suite), tmp_path / "studies" / "pets")


def test_cancel_stops_a_running_job_and_a_queued_one_never_starts(jobs, suite, tmp_path, consumer):
    book = JobBook(jobs)
    first = submit_study(jobs, "first", payload(suite, seeds=3), tmp_path / "a")
    second = submit_study(jobs, "second", payload(suite), tmp_path / "b")
    book.cancel(second.id)  # still queued behind the first: it never starts
    wait_for(book, first.id, ("running",))
    book.cancel(first.id)
    stopped = wait_for(book, first.id, ("cancelled", "done"))
    assert stopped.status == "cancelled" and "kept" in stopped.message
    assert book.get(second.id).status == "cancelled"
    assert not (tmp_path / "b").exists() and not (tmp_path / "a" / "study.json").exists()


def test_an_interrupted_job_is_marked_and_resumes_with_its_finished_runs(jobs, suite, tmp_path, consumer):
    book = JobBook(jobs)
    job = submit_study(jobs, "pets", payload(suite), tmp_path / "pets")
    wait_for(book, job.id, ("done",))
    # as if the worker had died while running: a dead pid, no study.json, the runs still there
    (tmp_path / "pets" / "study.json").unlink()
    runs_before = sorted(p.name for p in (tmp_path / "pets" / "runs").iterdir())
    book._set(job.id, status="running", pid=2**22 + 12345)
    assert [j.status for j in book.jobs()] == ["interrupted"]
    resume(jobs, job.id)
    again = wait_for(book, job.id, ("done", "failed"))
    assert again.status == "done", again.message
    assert sorted(p.name for p in (tmp_path / "pets" / "runs").iterdir()) == runs_before  # nothing generated twice
    with pytest.raises(BadRequestError, match="not stopped"):
        resume(jobs, job.id)


def test_the_dashboard_starts_one_worker_process_that_outlives_it(jobs, suite, tmp_path):
    pid = ensure_worker(jobs)
    try:
        assert ensure_worker(jobs) == pid  # alive: not started twice
        job = submit_study(jobs, "pets", payload(suite, seeds=1), tmp_path / "pets")
        done = wait_for(JobBook(jobs), job.id, ("done", "failed"), timeout=240)
        assert done.status == "done", (done.message, (jobs / "worker.log").read_text()[-2000:])
    finally:
        os.kill(int((jobs / WORKER_PID).read_text()), signal.SIGTERM)


def test_a_generation_job_saves_each_request_as_a_run_and_resumes_after_the_saved_ones(jobs, tmp_path, tiny_db):
    from rdm.generate import GenerationSettings
    from rdm.jobs import execute, submit_generation
    from rdm.runs import RunRequest

    fast = GenerationSettings(steps=2, prior_steps=2, size=(64, 64))
    requests = [RunRequest("a dog on a sofa", ("none", "full"), settings=fast, backend="tiny"),
                RunRequest("a cat with a toy", ("none",), settings=fast, backend="tiny")]
    job = submit_generation(jobs, "two runs", requests, tmp_path / "runs", tiny_db)
    book = JobBook(jobs)
    execute(jobs, job.id)  # as the worker does
    done = book.get(job.id)
    assert done.status == "done" and len(done.result) == 2 and done.done == done.total == 2
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(done.result)
    # interrupted after the first run: a resume makes only the second again
    book._set(job.id, status="running", pid=2**22 + 12345, result=json.dumps(done.result[:1]))
    (tmp_path / "runs" / done.result[1]).rename(tmp_path / "gone")
    assert book.jobs()[0].status == "interrupted"
    resume(jobs, job.id)
    execute(jobs, job.id)
    again = book.get(job.id)
    assert again.status == "done" and again.result[0] == done.result[0] and len(again.result) == 2
    assert RunRequest.from_dict(job.payload["requests"][0]) == requests[0]  # the payload is the request


def test_one_worker_per_jobs_folder_and_a_reused_pid_is_not_a_worker(jobs, suite, tmp_path):
    from rdm.jobs import run_worker, worker_running

    book = JobBook(jobs)
    job = submit_study(jobs, "pets", payload(suite), tmp_path / "pets")
    book._set(job.id, status="running", pid=1)  # pid 1 is alive, but it is not a worker of this folder
    assert not worker_running(jobs) and book.get(job.id).status == "interrupted"
    pid = ensure_worker(jobs)
    try:
        assert ensure_worker(jobs) == pid  # starting: not started twice
        deadline = time.monotonic() + 60
        while not worker_running(jobs) and time.monotonic() < deadline:
            time.sleep(0.05)  # Python and torch load before the worker takes its lock
        assert worker_running(jobs)
        with pytest.raises(BadRequestError, match="already runs"):
            run_worker(jobs)  # a second worker for the folder refuses to start
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while worker_running(jobs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not worker_running(jobs)  # the lock goes with the process


def test_an_evaluation_job_reports_each_query_and_saves_results_that_read_back(tiny_db, tmp_path):
    from rdm.db import ImageStore
    from rdm.jobs import evaluation_file, execute, submit_evaluation
    from rdm.retrieve.eval_runs import EvalRequest, load_results, run_evaluation

    store = ImageStore.open(tiny_db)
    fish = [r.filename for r in store.records() if "fish" in r.tags]
    lines = "".join(json.dumps(q) + "\n" for q in [{"query": "a fish", "relevant": fish},
                                                    {"query": "a zorblat", "relevant": fish[:1]}])
    request = EvalRequest("upload:mine.jsonl", lines, ("text", "hybrid"), ("full", "subquery+filter"))
    seen = []
    direct = run_evaluation(request, store, progress=lambda done, total, what: seen.append((done, total)))
    assert seen[-1] == (8, 8) and len(seen) == 8  # two queries in each of four configurations
    job = submit_evaluation(tmp_path / "jobs", EvalRequest.from_dict(request.to_dict()), tiny_db)
    execute(tmp_path / "jobs", job.id)
    done = JobBook(tmp_path / "jobs").get(job.id)
    assert done.status == "done" and (done.done, done.total) == (8, 8)
    saved = load_results(evaluation_file(done), store)
    assert [(r.retrieval, r.mode, r.metrics) for r in saved] == [(r.retrieval, r.mode, r.metrics) for r in direct]
    def misses(results):  # what a miss shows: the concept, why, and the hits (scores as saved, to 6 digits)
        return [(m.concept, m.why, m.subquery,
                 [(h.id, round(h.score, 6), h.record.caption, h.explain()) for h in m.best])
                for r in results for o in r.outcomes for m in o.misses]
    assert misses(saved) == misses(direct) and any(best for *_, best in misses(saved))
