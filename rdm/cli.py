"""The `rdm` command line. Each command parses flags, calls the library, prints; no logic here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from rdm.settings import load_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="RDM Studio: reference-image DB, sub-query retrieval, Kandinsky 2.2 runs.")

DbOption = typer.Option(None, "--db", help="DB folder (default: env RDM_DB, else the demo DB).")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON only.")


def fail(message: str, code: int = 1) -> None:
    """Print an actionable error (no traceback) and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# --- DB commands (store, encoders) ---


def open_store(db: Optional[Path], encoder: Optional[str] = None):
    """The DB named by --db, env RDM_DB, or the demo DB; errors become one-line messages."""
    from rdm.encoders import EncoderError, load_encoder
    from rdm.db import ImageStore, StoreError

    path = load_settings(db=db).db
    try:
        return ImageStore.open(path, load_encoder(encoder) if encoder else None)
    except (StoreError, EncoderError) as exc:
        fail(str(exc))


class _Progress:
    """A stderr progress bar, so `--json` output on stdout stays clean."""

    def __init__(self, label: str):
        import click

        self.label, self.bar, self.click = label, None, click

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = self.click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        print_json({"hits": [h.to_dict() for h in hits]})
        return
    if not hits:
        typer.echo("no hits")
    for h in hits:
        typer.echo(f"{h.id:>6}  {h.score:6.3f}  {h.record.category:<12} {h.record.filename}"
                   f"  {h.record.caption}")


@app.command()
def ingest(paths: list[Path] = typer.Argument(..., help="Image files, folders or .zip archives."),
           db: Optional[Path] = DbOption,
           category: Optional[str] = typer.Option(None, help="Category for every new image."),
           tags: Optional[str] = typer.Option(None, help="Comma-separated tags for every new image."),
           encoder: Optional[str] = typer.Option(None, help="Encoder for a NEW DB (default: auto)."),
           as_json: bool = JsonOption) -> None:
    """Add images to the DB (created if missing); bad files are reported and skipped."""
    from rdm.encoders import EncoderError, resolve_encoder
    from rdm.db import ImageStore, StoreError

    settings = load_settings(db=db)
    try:
        if (settings.db / "meta.sqlite").exists():
            store = open_store(db, encoder)
        else:
            choice = resolve_encoder(encoder or settings.encoder)
            store = ImageStore.create(settings.db, choice.encoder, encoder_reason=choice.reason)
        progress = _Progress("embedding")
        report = store.ingest(paths, category=category, tags=tags, progress=progress)
        progress.close()
    except (StoreError, EncoderError) as exc:
        fail(str(exc))
    if as_json:
        print_json({"added": [{"name": i.name, "id": i.image_id} for i in report.added],
                    "duplicates": [{"name": i.name, "id": i.image_id, "reason": i.reason}
                                   for i in report.duplicates],
                    "skipped": [{"name": i.name, "reason": i.reason} for i in report.skipped]})
        return
    for item in report.duplicates + report.skipped:
        typer.echo(f"{item.status:>9}: {item.name}: {item.reason}")
    typer.echo(report.summary())


@app.command()
def search(text: str, k: int = typer.Option(10, "-k", help="Number of hits."),
           category: Optional[str] = typer.Option(None), tag: Optional[str] = typer.Option(None),
           db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Find images matching a text description."""
    from rdm.encoders import EncoderError
    from rdm.db import StoreError

    store = open_store(db)
    try:
        hits = store.search(text, k, category=category, tag=tag)
    except (StoreError, EncoderError) as exc:
        fail(str(exc))
    _print_hits(hits, as_json)


@app.command()
def similar(image_id: int = typer.Argument(..., metavar="ID"), k: int = typer.Option(10, "-k"),
            db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Find images similar to image ID."""
    from rdm.db import StoreError

    store = open_store(db)
    try:
        hits = store.similar(image_id, k)
    except StoreError as exc:
        fail(str(exc))
    _print_hits(hits, as_json)


@app.command()
def stats(db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Counts per category, live/deleted, encoder and index version."""
    st = open_store(db).stats()
    if as_json:
        print_json(st.to_dict())
        return
    typer.echo(f"DB {st.path}: {st.live} live, {st.deleted} deleted; encoder {st.encoder} "
               f"({st.dim}-d), index version {st.index_version}")
    for cat, n in st.by_category.items():
        typer.echo(f"  {cat or '(none)':<14} {n}")


@app.command()
def check(repair: bool = typer.Option(False, "--repair", help="Fix what is found."),
          db: Optional[Path] = DbOption, as_json: bool = JsonOption) -> None:
    """Report inconsistencies between files, rows, vectors and the FAISS index."""
    report = open_store(db).check(repair=repair)
    if as_json:
        print_json({"ok": report.ok, "problems": list(report.problems), "repaired": list(report.repaired)})
    else:
        for p in report.problems:
            typer.echo(f"problem: {p}")
        for r in report.repaired:
            typer.echo(f"repaired: {r}")
        typer.echo("DB is consistent" if report.ok else
                   ("repaired" if repair else "run `rdm check --repair` to fix"))
    if not report.ok and not repair:
        raise typer.Exit(1)


@app.command()
def reindex(encoder: str = typer.Option("auto", help="open_clip[:MODEL/PRETRAINED], conse, tiny or auto."),
            db: Optional[Path] = DbOption) -> None:
    """Re-embed every image with another encoder (the DB switches to it)."""
    from rdm.encoders import EncoderError, resolve_encoder
    from rdm.db import StoreError

    store = open_store(db)
    try:
        choice = resolve_encoder(encoder)
        progress = _Progress("re-embedding")
        n = store.reindex(choice.encoder, reason=choice.reason, progress=progress)
        progress.close()
    except (StoreError, EncoderError) as exc:
        fail(str(exc))
    typer.echo(f"re-embedded {n} images with {choice.encoder.name}")


@app.command()
def edit(image_id: int = typer.Argument(..., metavar="ID"), category: Optional[str] = typer.Option(None),
         tags: Optional[str] = typer.Option(None, help="Comma-separated; replaces the tags."),
         caption: Optional[str] = typer.Option(None), db: Optional[Path] = DbOption) -> None:
    """Edit an image's category, tags or caption."""
    from rdm.db import StoreError

    try:
        rec = open_store(db).edit(image_id, category=category, tags=tags, caption=caption)
    except StoreError as exc:
        fail(str(exc))
    typer.echo(f"{rec.id}: category={rec.category!r} tags={','.join(rec.tags)!r} caption={rec.caption!r}")


def _change(action: str, ids: list[int], db: Optional[Path]) -> None:
    from rdm.db import StoreError

    store = open_store(db)
    try:
        n = getattr(store, action)(ids)
    except StoreError as exc:
        fail(str(exc))
    typer.echo(f"{action}: {n} image(s) changed")


@app.command()
def delete(ids: list[int] = typer.Argument(..., metavar="ID..."), db: Optional[Path] = DbOption) -> None:
    """Soft-delete images (hidden from search; `rdm restore` brings them back)."""
    _change("delete", ids, db)


@app.command()
def restore(ids: list[int] = typer.Argument(..., metavar="ID..."), db: Optional[Path] = DbOption) -> None:
    """Restore soft-deleted images."""
    _change("restore", ids, db)


@app.command()
def purge(ids: list[int] = typer.Argument(..., metavar="ID..."), db: Optional[Path] = DbOption) -> None:
    """Delete images for good: rows, vectors and files."""
    _change("purge", ids, db)


@app.command("build-demo")
def build_demo(db: Optional[Path] = DbOption,
               encoder: str = typer.Option("auto", help="auto: open_clip if its weights load, else conse."),
               if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if the DB exists.")) -> None:
    """Build the demo DB from data/demo-photos."""
    from rdm.demo import build_demo_db
    from rdm.encoders import EncoderError
    from rdm.settings import DEMO_DB
    from rdm.db import StoreError

    path = db or DEMO_DB
    if (path / "meta.sqlite").exists():
        if if_missing:
            return
        fail(f"a DB already exists at {path}; remove it first to rebuild")
    try:
        progress = _Progress("building demo DB")
        store, report = build_demo_db(path, encoder=encoder, progress=progress)
        progress.close()
    except (StoreError, EncoderError) as exc:
        fail(str(exc))
    st = store.stats()
    typer.echo(f"demo DB at {path}: {report.summary()}; encoder {st.encoder}: {st.encoder_reason}")


# --- retrieval commands (decompose, retrieve, plan, evaluate) ---


@app.command("decompose")
def decompose_command(
    prompt: str = typer.Argument(..., help="The ad prompt to split into sub-queries."),
    backend: str = typer.Option("offline", "--backend",
                                help="llm (env RDM_LLM_BASE_URL / RDM_LLM_MODEL / RDM_LLM_API_KEY), "
                                     "offline (spaCy) or keybert (the seed's baseline keywords)."),
    as_json: bool = JsonOption,
) -> None:
    """Split a prompt into weighted sub-queries and a short summarised query."""
    from rdm.decompose import DecompositionError, decompose

    try:
        result = decompose(prompt, backend)
    except DecompositionError as exc:
        fail(str(exc))
    if as_json:
        return print_json(result.to_dict())
    typer.echo(f"backend: {result.backend}")
    if result.fallback_reason:
        typer.echo(f"LLM not used: {result.fallback_reason}")
    typer.echo(f"summary: {result.summary}")
    typer.echo(f"{'weight':>7}  {'score':>6}  sub-query")
    for q in result.subqueries:
        typer.echo(f"{q.weight:7.3f}  {'-' if q.score is None else f'{q.score:.3f}':>6}  {q.text}")
    for repair in result.repairs:
        typer.echo(f"repaired: {repair}")


SubqueryBackendOption = typer.Option("offline", "--backend", help="Sub-queries from llm, offline (spaCy) "
                                                                  "or keybert (exp1 always uses keybert).")
InputImageOption = typer.Option([], "--input-image", help="The advertiser's product photo(s), in order.")
BudgetOption = typer.Option(None, "--budget", help="At most this many references in the final set.")


def _retrieval_errors() -> tuple[type[Exception], ...]:
    from rdm.decompose import DecompositionError
    from rdm.encoders import EncoderError
    from rdm.evaluate import EvaluationError
    from rdm.plan import PlanError
    from rdm.retrieve import RetrievalError
    from rdm.db import StoreError

    return RetrievalError, DecompositionError, EvaluationError, StoreError, EncoderError, PlanError


def _check_inputs(paths: list[Path]) -> list[str]:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        fail(f"input image(s) not found: {', '.join(missing)}")
    return [str(p) for p in paths]


def _print_plan(plan) -> None:
    typer.echo(f"plan ({plan.mode}), weights sum to 1:")
    for item in plan.items:
        score = "" if item.score is None else f"  (score {item.score:.3f})"
        typer.echo(f"  {item.weight:6.3f}  {item.label()}{score}")
    for note in plan.notes:
        typer.echo(f"  note: {note}")


def _print_retrieval(result) -> None:
    d = result.decomposition
    if d is not None:
        typer.echo(f"sub-queries ({d.backend}): summary: {d.summary}")
        if d.fallback_reason:
            typer.echo(f"LLM not used: {d.fallback_reason}")
    if result.filters is not None:
        f = result.filters
        typer.echo(f"filter: absolute {f.threshold:.2f}, relative {f.relative:.2f} of each sub-query's best, "
                   f"near-duplicates above {f.dedupe:.2f}; {len(result.kept)} kept, {len(result.filtered)} left out")
    why = {id(h): reason for h, reason in result.filtered}
    kept = {id(h) for h in result.kept}
    by_subquery = any(h.subquery for h in result.hits)
    groups = [(q.text, q.weight) for q in d.subqueries] if by_subquery else [(None, 1.0)]
    for text, weight in groups:
        hits = [h for h in result.hits if h.subquery == text]
        if result.hits:
            typer.echo(f"[{weight:.2f}] {text}" if text else "[whole prompt]")
        for h in hits:
            status = "kept" if id(h) in kept else why.get(id(h), "")
            typer.echo(f"  #{h.id:<5} {h.score:6.3f}  {h.record.filename:<48} {status}")
    if result.uncovered:
        typer.echo("not covered: " + "; ".join(result.uncovered))
    _print_plan(result.plan)


@app.command("retrieve")
def retrieve_command(
    prompt: str = typer.Argument(..., help="The ad prompt."),
    mode: str = typer.Option("subquery+filter", "--mode", help="full | subquery | subquery+filter."),
    k: int = typer.Option(5, "-k", help="References retrieved per (sub-)query."),
    budget: Optional[int] = BudgetOption,
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Absolute cosine threshold "
                                              "(default: the DB encoder's, e.g. conse 0.30, open_clip 0.20)."),
    relative: float = typer.Option(0.8, "--relative", help="Keep hits scoring this fraction of their "
                                                           "sub-query's best hit."),
    dedupe: float = typer.Option(0.95, "--dedupe", help="References more alike than this are near-duplicates."),
    coverage_select: bool = typer.Option(False, "--coverage-select", help="One small set covering every "
                                                                          "sub-query instead of top-k each."),
    backend: str = SubqueryBackendOption,
    input_image: list[Path] = InputImageOption,
    db: Optional[Path] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Retrieve reference photos per sub-query, filter them, and show the conditioning plan."""
    from rdm.retrieve import MODES, FilterSettings, plan_for

    if mode not in MODES or mode == "none":
        fail(f"unknown retrieval mode {mode!r}: use full, subquery or subquery+filter")
    store = open_store(db)
    try:
        filters = FilterSettings(threshold=threshold, relative=relative, dedupe=dedupe,
                                 coverage_select=coverage_select)
        result = plan_for(store, prompt, mode, input_images=_check_inputs(input_image), k=k, budget=budget,
                          filters=filters, decomposer_backend=backend)
    except _retrieval_errors() as exc:
        fail(str(exc))
    if as_json:
        return print_json(result.to_dict())
    _print_retrieval(result)


@app.command("plan")
def plan_command(
    prompt: str = typer.Argument(..., help="The ad prompt."),
    preset: str = typer.Option(..., "--preset", help="exp1 | exp2 | exp3 | exp4 (the seed's experiments), "
                                                     "or a mode: none | full | subquery | subquery+filter."),
    input_image: list[Path] = InputImageOption,
    input_weight: list[float] = typer.Option([], "--input-weight", help="Fixed weight per input image "
                                             "(default: the preset's, e.g. 0.2 and 0.3 for exp1/exp2)."),
    k: int = typer.Option(5, "-k", help="References retrieved per (sub-)query."),
    budget: Optional[int] = BudgetOption,
    backend: str = SubqueryBackendOption,
    db: Optional[Path] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the conditioning plan (items and weights) of a seed experiment or a mode."""
    from rdm.retrieve import RECIPES, plan_for

    if preset not in RECIPES:
        fail(f"unknown preset {preset!r}: use one of {', '.join(RECIPES)}")
    store = open_store(db)
    try:
        result = plan_for(store, prompt, preset, input_images=_check_inputs(input_image),
                          input_weights=input_weight or None, k=k, budget=budget, decomposer_backend=backend)
    except _retrieval_errors() as exc:
        fail(str(exc))
    if as_json:
        return print_json(result.plan.to_dict())
    _print_plan(result.plan)


@app.command("eval-retrieval")
def eval_retrieval_command(
    queries: Path = typer.Argument(..., help="JSONL query file (e.g. data/queries/composite.jsonl)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="full | subquery | subquery+filter "
                                                            "(default: all three side by side)."),
    k: int = typer.Option(5, "-k", help="Cut-off for recall/precision/nDCG and hits per (sub-)query."),
    budget: int = typer.Option(5, "--budget", help="References in the final set, the same for every mode."),
    backend: str = typer.Option("offline", "--backend", help="Sub-queries from offline (spaCy) or llm."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Absolute cosine threshold "
                                                                        "(default: the DB encoder's)."),
    relative: float = typer.Option(0.8, "--relative", help="Relative threshold of subquery+filter."),
    db: Optional[Path] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Score retrieval modes on a labelled query set at an equal reference budget."""
    from rdm.evaluate import EVAL_MODES, evaluate, format_table, load_queries
    from rdm.retrieve import FilterSettings

    if mode is not None and mode not in EVAL_MODES:
        fail(f"unknown mode {mode!r}: use one of {', '.join(EVAL_MODES)}")
    if backend not in ("offline", "llm"):
        fail(f"unknown backend {backend!r}: use offline or llm")
    store = open_store(db)
    try:
        labelled = load_queries(queries, store)
        filters = FilterSettings(threshold=threshold, relative=relative)
        results = [evaluate(store, labelled, m, k=k, budget=budget, decomposer_backend=backend, filters=filters)
                   for m in ([mode] if mode else EVAL_MODES)]
    except _retrieval_errors() as exc:
        fail(str(exc))
    if as_json:
        return print_json(results[0].to_dict() if mode else [r.to_dict() for r in results])
    typer.echo(f"{queries}: {len(labelled)} queries, k={k}, budget={budget} references, "
               f"backend {backend}, encoder {store.encoder_name}")
    typer.echo(format_table(results))


# --- generation commands (generate, worker, runs) ---


RunsDirOption = typer.Option(None, "--runs-dir", help="Run folders (default: env RDM_RUNS, else runs/).")


def _parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height or width)
    except ValueError:
        fail(f"--size {text!r} is not a size: use e.g. 768 or 768x512")


def _run_line(run) -> str:
    modes = ",".join(m.mode for m in run.modes)
    images = sum(len(m.images) for m in run.modes)
    flag = " [TEST MODEL]" if run.test_model else ""
    return f"{run.id}  {run.created}  {modes:<28} {images:>3} img{flag}  {run.prompt[:60]}"


def _print_run(run) -> None:
    from rdm.runs import placement_text

    typer.echo(f"run {run.id}  ({run.folder})")
    if run.test_model:
        typer.echo("TEST MODEL: tiny random-weight Kandinsky, the images are noise, not results")
    typer.echo(f"prompt: {run.prompt}")
    s, g = run.settings, run.generator
    typer.echo(f"seed {s.seed}, {s.n_images} image(s), {s.steps} steps, CFG {s.guidance}, "
               f"{s.size[0]}x{s.size[1]}; prior {g.prior_id}; decoder {g.decoder_id} on {g.gpu_name or g.device}")
    if run.product:
        typer.echo(f"product kept pixel-identical: {run.product.get('source')}, "
                   f"{placement_text(run.product)} (sha256 {run.product.get('sha256', '')[:12]})")
    if run.db:
        typer.echo(f"DB {run.db.get('path')} (index v{run.db.get('index_version')}, encoder {run.db.get('encoder')})")
    for i, req in enumerate(run.requirements, 1):
        typer.echo(f"requirement R{i}: {req}")
    for mode in run.modes:
        typer.echo(f"\n[{mode.mode}] {mode.seconds:.1f}s")
        _print_plan(mode.plan)
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
    strength: float = typer.Option(0.3, help="Variations: how far to move away from the photo (0-1]."),
    product: Optional[Path] = typer.Option(None, "--product", help="Keep this product pixel-identical and "
                                           "generate around it: a PNG with a transparent background."),
    product_mask: Optional[Path] = typer.Option(None, "--product-mask", help="Mask for a --product photo "
                                                "without transparency (white = product)."),
    product_scale: float = typer.Option(0.5, "--product-scale", help="Product's longer side as a share of "
                                        "the image's shorter side."),
    product_x: float = typer.Option(0.5, "--product-x", help="Product centre, share of the width."),
    product_y: float = typer.Option(0.6, "--product-y", help="Product centre, share of the height."),
    seed: int = typer.Option(0, help="Image k uses seed+k."),
    n: int = typer.Option(4, "--n", help="Images per mode."),
    steps: int = typer.Option(50, help="Decoder denoising steps."),
    prior_steps: int = typer.Option(25, help="Prior denoising steps."),
    guidance: float = typer.Option(4.0, help="Decoder classifier-free guidance."),
    size: str = typer.Option("768", help="768 or WIDTHxHEIGHT (multiples of 64)."),
    negative: str = typer.Option("", "--negative", help="Negative prompt."),
    k: int = typer.Option(5, "-k", help="References retrieved per query."),
    decomposer: str = typer.Option("offline", help="Sub-query backend: llm, offline or keybert."),
    backend: Optional[str] = typer.Option(None, help="local (this machine's GPU), remote (RDM_WORKER_URL) "
                                                     "or tiny (random-weight test model). Default: env RDM_BACKEND."),
    compare: bool = typer.Option(False, "--compare", help="All given modes (default: none, full, subquery, "
                                                          "subquery+filter) with the same seed in one run."),
    runs_dir: Optional[Path] = RunsDirOption,
    db: Optional[Path] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Retrieve references, generate images with Kandinsky 2.2 and save a run folder."""
    from rdm.decompose import DecompositionError
    from rdm.encoders import EncoderError
    from rdm.generate import GenerationError, GenerationSettings, make_generator
    from rdm.plan import PlanError
    from rdm.product import ProductError, ProductPlacement, load_product
    from rdm.retrieve import MODES, RetrievalError, plan_for
    from rdm.runs import db_provenance, generate_run
    from rdm.db import StoreError

    if product_mask and not product:
        fail("--product-mask needs --product (the photo it masks)")
    modes = [*mode, *preset] or (list(MODES) if compare else ["subquery+filter"])
    if len(modes) > 1 and not compare:
        fail(f"{len(modes)} modes given ({', '.join(modes)}): add --compare to run them side by side")
    settings = load_settings(db=db, runs_dir=runs_dir, backend=backend)
    store = open_store(db)
    try:
        gen_settings = GenerationSettings(seed=seed, n_images=n, steps=steps, prior_steps=prior_steps,
                                          guidance=guidance, size=_parse_size(size), negative_prompt=negative,
                                          strength=strength)
        lock = (load_product(product, product_mask, ProductPlacement(product_scale, product_x, product_y))
                if product else None)
        retrievals = [plan_for(store, prompt, m, input_images=[str(p) for p in input_image], k=k,
                               decomposer_backend=decomposer) for m in modes]
        generator = make_generator(settings)
        if generator.info.test_model:
            typer.echo("note: the tiny test model has random weights: its images are noise, labelled as such",
                       err=True)

        def progress(mode_name: str, stage: str, step: int, total: int) -> None:
            if step == total:
                typer.echo(f"[{mode_name}] {stage} done ({total} steps)", err=True)

        run = generate_run(generator, retrievals, settings=gen_settings, runs_dir=settings.runs_dir,
                           open_image=store.open_image, scorer=store.encoder, db=db_provenance(store),
                           init_image=variation_of, product=lock, progress=progress,
                           options={"k": k, "decomposer": decomposer, "backend": settings.backend})
    except (GenerationError, RetrievalError, DecompositionError, StoreError, EncoderError, PlanError,
            ProductError) as exc:
        fail(str(exc))
    if as_json:
        return print_json({**run.to_dict(), "folder": str(run.folder)})
    _print_run(run)


@app.command("worker")
def worker_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: all; set --token then)."),
    port: int = typer.Option(8765),
    token: Optional[str] = typer.Option(None, help="Bearer token clients must send (default: env RDM_WORKER_TOKEN)."),
    backend: str = typer.Option("local", help="local (Kandinsky 2.2 weights, CUDA if present) or tiny (test model)."),
    max_body_mb: float = typer.Option(64.0, help="Largest request body accepted."),
    max_timeout: float = typer.Option(600.0, help="Longest a job may wait and run, in seconds."),
) -> None:
    """Serve Kandinsky 2.2 generation over HTTP for `--backend remote` clients (one job at a time)."""
    from rdm.generate import GenerationError, make_generator
    from rdm.worker import run_worker

    if backend not in ("local", "tiny"):
        fail(f"the worker runs the model itself: --backend local or tiny, not {backend!r}")
    settings = load_settings()
    token = token or settings.worker_token
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        typer.echo(f"warning: listening on {host} without --token: anyone who can reach this port can use the GPU",
                   err=True)
    try:
        generator = make_generator(settings, backend)
    except GenerationError as exc:
        fail(str(exc))
    info = generator.info
    typer.echo(f"worker: prior {info.prior_id}, decoder {info.decoder_id} on {info.gpu_name or info.device} "
               f"({info.dtype}){' [TEST MODEL]' if info.test_model else ''}; http://{host}:{port}", err=True)
    run_worker(generator, host=host, port=port, token=token, max_body_bytes=int(max_body_mb * 2**20),
               max_timeout_s=max_timeout)


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
    from rdm.runs import RunError, load_run

    try:
        run = load_run(load_settings(runs_dir=runs_dir).runs_dir, run_id)
    except RunError as exc:
        fail(str(exc))
    if as_json:
        return print_json({**run.to_dict(), "folder": str(run.folder)})
    _print_run(run)


@runs_app.command("export")
def runs_export(run_id: str = typer.Argument(..., metavar="ID"),
                html: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained HTML page here."),
                zip_path: Optional[Path] = typer.Option(None, "--zip", help="Write run.json + images as a zip here."),
                runs_dir: Optional[Path] = RunsDirOption) -> None:
    """Export a run for stakeholders: an HTML page with every image inlined, or a zip."""
    from rdm.runs import RunError, export_html, load_run, zip_run

    if html is None and zip_path is None:
        fail("nothing to export: give --html OUT.html and/or --zip OUT.zip")
    try:
        run = load_run(load_settings(runs_dir=runs_dir).runs_dir, run_id)
    except RunError as exc:
        fail(str(exc))
    if html is not None:
        export_html(run, html)
        typer.echo(f"wrote {html}")
    if zip_path is not None:
        zip_run(run, zip_path)
        typer.echo(f"wrote {zip_path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
