"""The generation commands: generate (builds a RunRequest), worker, runs list/show/export."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rdm.cli.app import (DbOption, JsonOption, RetrievalOption, RunsDirOption, app, fusion_of, open_store, print_json,
                         print_plan)
from rdm.cli.retrieval import KOption, check_inputs
from rdm.errors import RDMError
from rdm.generate.settings import (DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_TIMEOUT_S,
                                   GenerationSettings)
from rdm.retrieve import MODES, RetrievalSettings
from rdm.generate.product import ProductPlacement
from rdm.settings import load_settings

DEFAULTS = GenerationSettings()


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height or width)
    except ValueError:
        raise RDMError(f"--size {text!r} is not a size: use e.g. 768 or 768x512") from None


def _run_line(run) -> str:
    modes = ",".join(m.mode for m in run.modes)
    images = sum(len(m.images) for m in run.modes)
    flag = " [TEST MODEL]" if run.test_model else ""
    return f"{run.id}  {run.created}  {modes:<28} {images:>3} img{flag}  {run.prompt[:60]}"


def _print_run(run) -> None:
    typer.echo(f"run {run.id}  ({run.folder})")
    if run.test_model:
        typer.echo("TEST MODEL: tiny random-weight Kandinsky, the images are noise, not results")
    typer.echo(f"prompt: {run.prompt}")
    s, g = run.settings, run.generator
    typer.echo(f"seed {s.seed}, {s.n_images} image(s), {s.steps} steps, CFG {s.guidance}, "
               f"{s.size[0]}x{s.size[1]}; prior {g.prior_id}; decoder {g.decoder_id} on {g.gpu_name or g.device}")
    if run.product:
        typer.echo(f"product kept pixel-identical: {run.product.source}, {run.product.placement_text()} "
                   f"(sha256 {run.product.sha256[:12]})")
    if run.db:
        typer.echo(f"DB {run.db.path} (index v{run.db.index_version}, encoder {run.db.encoder})")
    for i, req in enumerate(run.requirements, 1):
        typer.echo(f"requirement R{i}: {req}")
    for mode in run.modes:
        typer.echo(f"\n[{mode.mode}] {mode.seconds:.1f}s")
        print_plan(mode.plan)
        for image in mode.images:
            reqs = " ".join(f"R{i}={v:.3f}" for i, v in enumerate(image.requirement_scores, 1))
            prompt_score = "-" if image.prompt_score is None else f"{image.prompt_score:.3f}"
            typer.echo(f"  {image.file}  seed {image.seed}  prompt={prompt_score} {reqs}")


@app.command("generate")
def generate_command(
    prompt: str = typer.Argument(..., help="The ad prompt."),
    mode: list[str] = typer.Option([], "--mode", help="none | full | subquery | subquery+filter (repeatable)."),
    preset: list[str] = typer.Option([], "--preset", help="exp1 .. exp4, the seed's experiments (repeatable)."),
    input_image: list[Path] = typer.Option([], "--input-image", help="The advertiser's product photo(s)."),
    variation_of: Optional[Path] = typer.Option(None, "--variation-of",
                                                help="Make img2img variations of this product photo."),
    strength: float = typer.Option(DEFAULTS.strength, help="Variations: how far to move away from the photo (0-1]."),
    product: Optional[Path] = typer.Option(None, "--product", help="Keep this product pixel-identical and "
                                           "generate around it: a PNG with a transparent background."),
    product_mask: Optional[Path] = typer.Option(None, "--product-mask", help="Mask for a --product photo "
                                                "without transparency (white = product)."),
    product_scale: float = typer.Option(ProductPlacement.scale, "--product-scale",
                                        help="Product's longer side as a share of the image's shorter side."),
    product_x: float = typer.Option(ProductPlacement.x, "--product-x", help="Product centre, share of the width."),
    product_y: float = typer.Option(ProductPlacement.y, "--product-y", help="Product centre, share of the height."),
    seed: int = typer.Option(DEFAULTS.seed, help="Image k uses seed+k."),
    n: int = typer.Option(DEFAULTS.n_images, "--n", help="Images per mode."),
    steps: int = typer.Option(DEFAULTS.steps, help="Decoder denoising steps."),
    prior_steps: int = typer.Option(DEFAULTS.prior_steps, help="Prior denoising steps."),
    guidance: float = typer.Option(DEFAULTS.guidance, help="Decoder classifier-free guidance."),
    size: str = typer.Option("x".join(map(str, DEFAULTS.size)), help="768 or WIDTHxHEIGHT (multiples of 64)."),
    negative: str = typer.Option(DEFAULTS.negative_prompt, "--negative", help="Negative prompt."),
    k: int = KOption,
    decomposer: str = typer.Option(RetrievalSettings.decomposer, "--decomposer",
                                   help="Sub-queries from llm, offline or keybert (exp1 always uses keybert)."),
    retrieval: str = RetrievalOption,
    backend: Optional[str] = typer.Option(None, help="local (this machine's GPU), remote (RDM_WORKER_URL) "
                                                     "or tiny (random-weight test model). Default: env RDM_BACKEND."),
    compare: bool = typer.Option(False, "--compare", help="All given modes (default: none, full, subquery, "
                                                          "subquery+filter) with the same seed in one run."),
    runs_dir: Optional[Path] = RunsDirOption,
    db: Optional[Path] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Retrieve references, generate images with Kandinsky 2.2 and save a run folder."""
    from rdm.generate import make_generator
    from rdm.generate.product import load_product
    from rdm.runs import RunRequest, run_request

    # 1. the request, from the flags
    if product_mask and not product:
        raise RDMError("--product-mask needs --product (the photo it masks)")
    modes = [*mode, *preset] or (list(MODES) if compare else ["subquery+filter"])
    if len(modes) > 1 and not compare:
        raise RDMError(f"{len(modes)} modes given ({', '.join(modes)}): add --compare to run them side by side")
    settings = load_settings(db=db, runs_dir=runs_dir, backend=backend)
    request = RunRequest(
        prompt=prompt, modes=tuple(modes), input_images=tuple(check_inputs(input_image)),
        variation_of=check_inputs([variation_of])[0] if variation_of else None,  # before any model loads
        product=load_product(product, product_mask, ProductPlacement(product_scale, product_x, product_y))
        if product else None,
        settings=GenerationSettings(seed=seed, n_images=n, steps=steps, prior_steps=prior_steps, guidance=guidance,
                                    size=parse_size(size), negative_prompt=negative, strength=strength),
        retrieval=RetrievalSettings(k=k, decomposer=decomposer, fusion=fusion_of(retrieval)),
        backend=settings.backend)

    # 2. run it
    def generator():
        made = make_generator(settings, request.backend)
        if made.info.test_model:
            typer.echo("note: the tiny test model has random weights: its images are noise, labelled as such",
                       err=True)
        return made

    def progress(mode_name: str, stage: str, step: int, total: int) -> None:
        if step == total:
            typer.echo(f"[{mode_name}] {stage} done ({total} steps)", err=True)

    run = run_request(request, store=open_store(db), generator=generator, runs_dir=settings.runs_dir,
                      progress=progress)
    if as_json:
        return print_json({**run.to_dict(), "folder": str(run.folder)})
    _print_run(run)


@app.command("worker")
def worker_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: all; needs --token then)."),
    port: int = typer.Option(8765),
    token: Optional[str] = typer.Option(None, help="Bearer token clients must send (default: env RDM_WORKER_TOKEN)."),
    insecure_no_token: bool = typer.Option(False, "--insecure-no-token",
                                           help="Allow a non-loopback --host without a token (trusted networks only)."),
    backend: str = typer.Option("local", help="local (Kandinsky 2.2 weights, CUDA if present) or tiny (test model)."),
    max_body_mb: float = typer.Option(DEFAULT_MAX_BODY_BYTES / 2**20, help="Largest request body accepted."),
    max_timeout: float = typer.Option(DEFAULT_MAX_TIMEOUT_S, help="Longest a job may wait and run, in seconds."),
    max_megapixels: float = typer.Option(DEFAULT_MAX_PIXELS / 1e6, help="Most pixels of all pictures of one request."),
) -> None:
    """Serve Kandinsky 2.2 generation over HTTP for `--backend remote` clients (one job at a time)."""
    from rdm.generate import make_generator
    from rdm.generate.worker import check_exposure, run_worker

    if backend not in ("local", "tiny"):
        raise RDMError(f"the worker runs the model itself: --backend local or tiny, not {backend!r}")
    settings = load_settings()
    token = token or settings.worker_token
    check_exposure(host, token, insecure_no_token)  # before minutes of loading weights
    generator = make_generator(settings, backend)
    info = generator.info
    typer.echo(f"worker: prior {info.prior_id}, decoder {info.decoder_id} on {info.gpu_name or info.device} "
               f"({info.dtype}){' [TEST MODEL]' if info.test_model else ''}; http://{host}:{port}", err=True)
    run_worker(generator, host=host, port=port, token=token, insecure_no_token=insecure_no_token,
               max_body_bytes=int(max_body_mb * 2**20), max_timeout_s=max_timeout,
               max_pixels=int(max_megapixels * 1e6))


def dashboard_argv(host: str, port: int) -> list[str]:
    """``streamlit run`` of the dashboard through its launcher (dashboard/serve.py: the pages' modules imported
    before the first browser connects), bound to ``host`` explicitly (an unset address means every interface).
    Run in the repository root."""
    import sys

    return [sys.executable, "-m", "dashboard.serve", "--server.address", host, "--server.port", str(port)]


def dashboard_env(environ: dict[str, str], cwd: Path) -> dict[str, str]:
    """The environment for a dashboard started in the repo root (where Streamlit finds the project's
    .streamlit/config.toml), with the paths a user gave relative to ``cwd`` made absolute first."""
    env = dict(environ)
    env.setdefault("RDM_RUNS", "runs")
    for name in ("RDM_DB", "RDM_RUNS", "RDM_CACHE"):
        if env.get(name) and not Path(env[name]).is_absolute():
            env[name] = str((cwd / env[name]).resolve())
    return env


@app.command("dashboard")
def dashboard_command(host: str = typer.Option("127.0.0.1", help="Interface to serve on (0.0.0.0: every one)."),
                      port: int = typer.Option(8501)) -> None:
    """Serve the dashboard (what `make run` does), on 127.0.0.1 unless told otherwise, from any folder."""
    import os

    from rdm.settings import REPO_ROOT

    argv, env = dashboard_argv(host, port), dashboard_env(dict(os.environ), Path.cwd())
    typer.echo(f"RDM Studio on http://{host}:{port}", err=True)
    os.chdir(REPO_ROOT)
    os.execve(argv[0], argv, env)


runs_app = typer.Typer(no_args_is_help=True, help="List, show and export generation runs.")
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def runs_list(runs_dir: Optional[Path] = RunsDirOption, as_json: bool = JsonOption) -> None:
    """All runs, newest first."""
    from rdm.runs import list_runs

    runs = list_runs(load_settings(runs_dir=runs_dir).runs_dir)
    if as_json:
        return print_json([{**r.to_dict(), "folder": str(r.folder)} for r in runs])
    if not runs:
        typer.echo("no runs yet: `rdm generate PROMPT` makes one")
    for run in runs:
        typer.echo(_run_line(run))


@runs_app.command("show")
def runs_show(run_id: str = typer.Argument(..., metavar="ID"), runs_dir: Optional[Path] = RunsDirOption,
              as_json: bool = JsonOption) -> None:
    """One run: prompt, requirements, plans, images and scores."""
    from rdm.runs import load_run

    run = load_run(load_settings(runs_dir=runs_dir).runs_dir, run_id)
    if as_json:
        return print_json({**run.to_dict(), "folder": str(run.folder)})
    _print_run(run)


@runs_app.command("export")
def runs_export(run_id: str = typer.Argument(..., metavar="ID"),
                html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML page here."),
                zip_path: Optional[Path] = typer.Option(None, "--zip", help="Write run.json + images as a zip here."),
                runs_dir: Optional[Path] = RunsDirOption) -> None:
    """Export a run for stakeholders: an HTML page with every image inlined, or a zip."""
    from rdm.runs import export_html, load_run, zip_run

    if html is None and zip_path is None:
        raise RDMError("nothing to export: give --html OUT.html and/or --zip OUT.zip")
    run = load_run(load_settings(runs_dir=runs_dir).runs_dir, run_id)
    if html is not None:
        export_html(run, html)
        typer.echo(f"wrote {html}")
    if zip_path is not None:
        zip_run(run, zip_path)
        typer.echo(f"wrote {zip_path}")
