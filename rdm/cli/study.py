"""The study commands: run a prompt suite in every mode with the same seeds and judge it; show; export; and the
background jobs that run studies for the dashboard (worker, list, cancel, resume)."""

from __future__ import annotations

import inspect
import os
from dataclasses import asdict, replace
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
    ctx: typer.Context,
    suite: str = typer.Argument(..., help="A JSONL suite or a bundled one (dev/seed, dev/pets, test/pets); `run` also "
                                          "takes a folder written by `rdm study plan` and runs exactly its plan."),
    modes: str = typer.Option("none,full,subquery,subquery+filter", "--modes", help="Comma-separated modes/presets."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per prompt (the same in every mode)."),
    n: int = typer.Option(1, "--n", help="Images per seed."),
    candidates: int = typer.Option(1, "--candidates", help="Best-of-N: keep the best of N by VQAScore."),
    variation_strength: Optional[float] = typer.Option(None, "--variation-strength",
                                                       help="img2img variations of each prompt's first product "
                                                            "photo at this strength (0-1]."),
    scorer: list[str] = typer.Option([], "--scorer", help="clip[:MODEL/PRETRAINED|tiny], vqa[:HF_ID|tiny] "
                                                          "(repeatable; default clip and vqa)."),
    primary: Optional[str] = typer.Option(None, "--primary", help="MODE_A:MODE_B:METRIC, e.g. subquery+filter:none:"
                                                                  "vqa: the one comparison judged at the full level; "
                                                                  "the rest are exploratory (Holm-corrected)."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="The level a verdict is judged at (default 0.05)."),
    out: Optional[Path] = typer.Option(None, "--out", help="A new folder for study.json and the runs."),
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
    from rdm.study.plan import PLAN_FILE, check_primary, plan_request, read_plan
    from rdm.study.run import run_study
    from rdm.study.stats import parse_primary

    settings = load_settings(db=db, backend=backend)
    if (Path(suite) / PLAN_FILE).is_file():
        given = [f"--{name.replace('_', '-')}" for name in PLANNED
                 if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
        if given:
            raise RDMError(f"{suite} holds a plan, which fixes what runs: drop {', '.join(given)} (only --backend and "
                           "--db choose where it runs), or write a new plan with `rdm study plan`")
        plan = read_plan(suite)
        request, out = plan_request(plan), Path(suite)
        if backend is not None:
            request = replace(request, backend=settings.backend)  # recorded as a change from the plan
        primary_comparison, level = plan.primary, plan.alpha
    else:
        if out is None:
            raise RDMError("give --out FOLDER for the study (or, instead of a suite, a folder written by "
                           "`rdm study plan`)")
        request = _request(ctx.params, settings.backend)
        primary_comparison = check_primary(parse_primary(primary), request) if primary else None
        level = alpha

    def progress(done: int, total: int, what: str) -> None:
        typer.echo(f"[{done}/{total}] {what}", err=True)

    study = run_study(request, store=open_store(db), generator=generator_factories(settings, request.backend),
                      out=out, progress=progress, primary=primary_comparison, alpha=level)
    _print(study, as_json)


# what a plan fixes: given with a planned folder, they would change it (--backend and --db say where it runs)
PLANNED = ("modes", "seeds", "n", "candidates", "variation_strength", "scorer", "primary", "alpha", "out", "seed",
           "steps", "prior_steps", "guidance", "size", "k", "decomposer", "retrieval")


def _request(o: dict, backend: str):
    """The study the command's options (``o``) describe."""
    from rdm.study.request import StudyRequest
    from rdm.study.suite import load_suite

    return StudyRequest(
        suite=load_suite(o["suite"]), modes=tuple(m.strip() for m in o["modes"].split(",") if m.strip()),
        seeds=o["seeds"], n=o["n"], candidates=o["candidates"], scorers=tuple(o["scorer"]) or ("clip", "vqa"),
        backend=backend, variation_strength=o["variation_strength"],
        settings=GenerationSettings(seed=o["seed"], steps=o["steps"], prior_steps=o["prior_steps"],
                                    guidance=o["guidance"], size=parse_size(o["size"])),
        retrieval=RetrievalSettings(k=o["k"], decomposer=o["decomposer"], fusion=fusion_of(o["retrieval"])))


def study_plan(ctx: typer.Context, **params) -> None:
    """Pre-register a study: write its request, prompts, primary comparison and analysis into --out before any
    image exists; `rdm study run OUT` then runs exactly that, and its report says whether it ran unchanged."""
    from rdm.study.plan import write_plan
    from rdm.study.stats import ALPHA

    if params["out"] is None:
        raise RDMError("give --out FOLDER: the plan is written there, and `rdm study run FOLDER` runs it")
    request = _request(params, load_settings(db=params["db"], backend=params["backend"]).backend)
    plan = write_plan(params["out"], request, params["primary"], ALPHA if params["alpha"] is None else params["alpha"])
    if params["as_json"]:
        return print_json(plan.content | {"created": plan.created})
    typer.echo(f"registered {params['out'] / 'plan.json'} at {plan.created}: {len(request.suite)} prompt(s) x "
               f"{len(request.modes)} modes x {request.seeds * request.n} seed(s); primary "
               f"{plan.primary or 'none (every comparison exploratory, Holm-corrected)'}; alpha {plan.alpha}. "
               f"Run it with `rdm study run {params['out']}`.")


# the plan takes exactly the run's options (one list of them), minus what only a run needs
study_plan.__signature__ = inspect.signature(study_run)  # type: ignore[attr-defined]
study_plan.__annotations__ = study_run.__annotations__
study_app.command("plan")(study_plan)


@study_app.command("power")
def study_power(
    pilot: Path = typer.Argument(..., help="A pilot study folder (a few prompts, `rdm study run ... --out PILOT`)."),
    effect: float = typer.Option(..., "--effect", help="The true difference to detect, in the metric's units."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="The level of the comparison, judged as the primary "
                                                                "(default 0.05)."),
    power: float = typer.Option(0.8, "--power", help="The chance of detecting it that the plan needs."),
    compare: Optional[str] = typer.Option(None, "--compare", help="MODE_A:MODE_B:METRIC whose spread to use. Default: "
                                                                  "the pilot's primary, else its widest-spread pair "
                                                                  "of the first metric."),
    seeds: list[int] = typer.Option([], "--seeds", help="Seeds per prompt to plan for (repeatable). Default: 1, the "
                                                        "pilot's, and twice that."),
    sims: int = typer.Option(200, "--sims", help="Simulated studies per power estimate."),
    as_json: bool = JsonOption,
) -> None:
    """How many prompts (and seeds) detect a difference: studies simulated from the pilot's per-prompt variance
    and analysed by the study's own code."""
    from rdm.study.power import MAX_PROMPTS, detectable_effect, pilot_variance, prompts_needed
    from rdm.study.run import load_study
    from rdm.study.stats import ALPHA, fmt, min_untied, parse_primary

    alpha = ALPHA if alpha is None else alpha
    if not 0 < power < 1 or not 0 < alpha < 1 or sims < 10:
        raise RDMError("--power and --alpha must be between 0 and 1, and --sims at least 10")
    study = load_study(pilot)
    v = pilot_variance(study, parse_primary(compare, "--compare") if compare else None)
    plans = {s: prompts_needed(v, effect, s, alpha, power, sims)
             for s in sorted(set(seeds) or ({1, v.seeds, 2 * v.seeds} if v.seed_sd else {v.seeds}))}
    prompts = len(study["suite"])
    detectable = detectable_effect(v, prompts, v.seeds, alpha, power, sims)
    if as_json:
        return print_json({"variance": asdict(v), "effect": effect, "alpha": alpha, "power": power, "sims": sims,
                           "prompts_needed": {str(s): n for s, n in plans.items()},
                           "detectable_with_pilot_size": detectable})
    typer.echo(f"pilot {pilot}: {v.a} - {v.b} on {v.metric} over {v.prompts} prompts x {v.seeds} seed(s): the mode "
               f"effect varies between prompts by SD {fmt(v.prompt_sd)}, one seed's difference by SD {fmt(v.seed_sd)}")
    if v.caveat:
        typer.echo(f"note: {v.caveat}")
    typer.echo(f"to detect a difference of {effect} at {power:.0%} power (alpha {alpha}, two-sided, judged as the "
               f"primary; {sims} simulated studies per point through the study's own analysis):")
    for s, n in plans.items():
        typer.echo(f"  {s} seed(s) per prompt: {n if n else f'more than {MAX_PROMPTS}'} prompts")
    typer.echo(f"with {prompts} prompts x {v.seeds} seed(s) you can detect a difference of "
               + (f"{fmt(detectable)} at {power:.0%} power" if detectable is not None else
                  f"nothing: the test needs at least {min_untied(alpha)} prompts"))

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
