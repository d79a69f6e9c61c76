"""The work of each kind of job, run in the worker process: a study, generation requests, a map fit.

Each records its progress in the job book, so the page that follows the job sees every step.
"""

from __future__ import annotations

from pathlib import Path

from rdm.errors import RDMError
from rdm.jobs.book import WORKER_LOG, Job, JobBook, JobCancelled


def study_request(payload: dict):
    from rdm.generate import GenerationSettings
    from rdm.retrieve import Fusion, RetrievalSettings
    from rdm.study.request import StudyRequest
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
        message = {"study": _study, "map": _map, "evaluation": _evaluation}.get(job.kind, _generation)(book, job)
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
    from rdm.runs import RunRequest, run_request

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


def evaluation_file(job: Job) -> Path:
    return Path(job.out) / f"{job.id}.json"


def _evaluation(book: JobBook, job: Job) -> str:
    from rdm.retrieve.eval_runs import EvalRequest, run_evaluation, save_results

    request = EvalRequest.from_dict(job.payload["request"])
    store, _ = _store_and_settings(job)
    results = run_evaluation(request, store, progress=lambda done, total, what: book.progress(job.id, done, total,
                                                                                              what))
    save_results(results, evaluation_file(job))
    return f"evaluated {request.query_set} in {len(results)} configuration(s)"


def _map(book: JobBook, job: Job) -> str:
    from rdm.curation.map_layouts import map_layout

    store, _ = _store_and_settings(job)
    book.progress(job.id, 0, 1, f"fitting UMAP over {store.stats().live:,} images")  # a cancel stops it here
    return map_layout(store, refit=job.payload["refit"]).note
