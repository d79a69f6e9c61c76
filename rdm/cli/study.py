"""The study commands: run a prompt suite in every mode with the same seeds and judge it; show; export; and the
background jobs that run studies for the dashboard (worker, list, cancel, resume)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from rdm.cli.app import DbOption, JsonOption, RetrievalOption, app, fusion_of, open_store, print_json
from rdm.cli.generation import parse_size
from rdm.cli.retrieval import KOption
from rdm.errors import RDMError
from rdm.generate.settings import GenerationSettings
from rdm.retrieve import RetrievalSettings
from rdm.settings import load_settings

DEFAULTS = GenerationSettings()
study_app = typer.Typer(no_args_is_help=True, help="Generation studies: prompts x modes x seeds, judged and tested.")
app.add_typer(study_app, name="study")


@study_app.command("run")
def study_run(
    suite: str = typer.Argument(..., help="A JSONL suite, or a bundled one: dev/seed, dev/pets, test/pets."),
    modes: str = typer.Option("none,full,subquery,subquery+filter", "--modes", help="Comma-separated modes/presets."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per prompt (the same in every mode)."),
    n: int = typer.Option(1, "--n", help="Images per seed."),
    candidates: int = typer.Option(1, "--candidates", help="Best-of-N: keep the best of N by VQAScore."),
    variation_strength: Optional[float] = typer.Option(None, "--variation-strength",
                                                       help="img2img variations of each prompt's first product "
                                                            "photo at this strength (0-1]."),
    scorer: list[str] = typer.Option([], "--scorer", help="clip[:MODEL/PRETRAINED|tiny], vqa[:HF_ID|tiny] "
                                                          "(repeatable; default clip and vqa)."),
    out: Path = typer.Option(..., "--out", help="A new folder for study.json and the runs."),
    seed: int = typer.Option(DEFAULTS.seed, help="The first seed."),
    steps: int = typer.Option(DEFAULTS.steps, help="Decoder denoising steps."),
    prior_steps: int = typer.Option(DEFAULTS.prior_steps, help="Prior denoising steps."),
    guidance: float = typer.Option(DEFAULTS.guidance, help="Decoder classifier-free guidance."),
    size: str = typer.Option("x".join(map(str, DEFAULTS.size)), help="768 or WIDTHxHEIGHT (multiples of 64)."),
    k: int = KOption,
    decomposer: str = typer.Option(RetrievalSettings.decomposer, "--decomposer", help="llm, offline or keybert."),
    retrieval: str = RetrievalOption,
    backend: Optional[str] = typer.Option(None, help="local, remote (RDM_WORKER_URL) or tiny. Default: RDM_BACKEND."),
    db: Optional[Path] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Generate every prompt in every mode with the same seeds, score each image, and test the differences."""
    from rdm.generate import generator_factories
    from rdm.study.run import StudyRequest, run_study
    from rdm.study.suite import load_suite

    settings = load_settings(db=db, backend=backend)
    request = StudyRequest(
        suite=load_suite(suite), modes=tuple(m.strip() for m in modes.split(",") if m.strip()), seeds=seeds, n=n,
        candidates=candidates, scorers=tuple(scorer) or ("clip", "vqa"), backend=settings.backend,
        variation_strength=variation_strength,
        settings=GenerationSettings(seed=seed, steps=steps, prior_steps=prior_steps, guidance=guidance,
                                    size=parse_size(size)),
        retrieval=RetrievalSettings(k=k, decomposer=decomposer, fusion=fusion_of(retrieval)))

    def progress(done: int, total: int, what: str) -> None:
        typer.echo(f"[{done}/{total}] {what}", err=True)

    study = run_study(request, store=open_store(db), generator=generator_factories(settings, request.backend),
                      out=out, progress=progress)
    _print(study, as_json)


@study_app.command("show")
def study_show(folder: Path = typer.Argument(..., help="A study folder (--out of `rdm study run`)."),
               as_json: bool = JsonOption) -> None:
    """A study's figures: mean and 95% interval per mode and scorer, paired comparisons, notes."""
    from rdm.study.run import load_study

    _print(load_study(folder), as_json)


@study_app.command("export")
def study_export(folder: Path = typer.Argument(..., help="A study folder."),
                 csv_path: Optional[Path] = typer.Option(None, "--csv", help="Every score, one row each."),
                 html: Optional[Path] = typer.Option(None, "--html", help="The self-contained report page.")) -> None:
    """Export a study: every score as CSV, and/or the stakeholder report as one HTML file."""
    from rdm.common.files import atomic_write
    from rdm.study.export import scores_csv
    from rdm.study.report import study_html
    from rdm.study.run import load_study

    if csv_path is None and html is None:
        raise RDMError("nothing to export: give --csv OUT.csv and/or --html OUT.html")
    study = load_study(folder)
    if csv_path is not None:
        atomic_write(csv_path, scores_csv(study).encode("utf-8"))
        typer.echo(f"wrote {csv_path}")
    if html is not None:
        study_html(study, folder, html)
        typer.echo(f"wrote {html}")


jobs_app = typer.Typer(no_args_is_help=True, help="Background jobs (studies submitted from the dashboard).")
app.add_typer(jobs_app, name="jobs")
JobsDirOption = typer.Option(None, "--jobs-dir", help="The jobs folder (default: RDM_JOBS, else jobs/).")


def _jobs_dir(jobs_dir: Optional[Path]) -> Path:
    return jobs_dir or load_settings().jobs_dir


@jobs_app.command("worker")
def jobs_worker(jobs_dir: Optional[Path] = JobsDirOption) -> None:
    """Run queued jobs until stopped (the dashboard starts one itself when none runs)."""
    from rdm.jobs import run_worker

    typer.echo(f"rdm jobs worker on {_jobs_dir(jobs_dir)} (pid {os.getpid()})", err=True)
    run_worker(_jobs_dir(jobs_dir))


@jobs_app.command("list")
def jobs_list(jobs_dir: Optional[Path] = JobsDirOption, as_json: bool = JsonOption) -> None:
    """Every job, newest first, with its status and progress."""
    from rdm.jobs import JobBook

    jobs = JobBook(_jobs_dir(jobs_dir)).jobs()
    if as_json:
        return print_json([{**asdict(j), "payload": j.payload} for j in jobs])
    if not jobs:
        typer.echo("no jobs")
    for j in jobs:
        typer.echo(f"{j.id}  {j.status:<11} {j.done}/{j.total}  {j.title}  {j.message}")


@jobs_app.command("cancel")
def jobs_cancel(job_id: str = typer.Argument(..., metavar="ID"), jobs_dir: Optional[Path] = JobsDirOption) -> None:
    """Stop a job at its next step (a queued one never starts); what it finished is kept."""
    from rdm.jobs import JobBook

    JobBook(_jobs_dir(jobs_dir)).cancel(job_id)
    typer.echo(f"cancelling {job_id}")


@jobs_app.command("resume")
def jobs_resume(job_id: str = typer.Argument(..., metavar="ID"), jobs_dir: Optional[Path] = JobsDirOption) -> None:
    """Queue an interrupted, failed or cancelled job again; it reuses the runs it had finished."""
    from rdm.jobs import resume

    resume(_jobs_dir(jobs_dir), job_id)
    typer.echo(f"queued {job_id} again")


def _print(study: dict, as_json: bool) -> None:
    from rdm.study.export import summary_lines

    if as_json:
        return print_json({key: value for key, value in study.items() if key != "images"}
                          | {"images": [{k: v for k, v in i.items() if k != "embedding"} for i in study["images"]]})
    typer.echo("\n".join(summary_lines(study)))
