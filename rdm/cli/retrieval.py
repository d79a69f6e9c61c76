"""The retrieval commands: decompose, retrieve, plan, eval-retrieval."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rdm.cli.app import DbOption, JsonOption, RetrievalOption, app, fusion_of, open_store, print_json, print_plan
from rdm.decompose import BACKENDS as DECOMPOSERS
from rdm.errors import RDMError
from rdm.retrieve import EVAL_BUDGET, EVAL_MODES, MODES, RECIPES, FilterSettings, RetrievalSettings

DecomposerOption = typer.Option(RetrievalSettings.decomposer, "--backend",
                                help=f"Sub-queries from {', '.join(DECOMPOSERS)} (exp1 always uses keybert).")
InputImageOption = typer.Option([], "--input-image", help="The advertiser's product photo(s), in order.")
BudgetOption = typer.Option(RetrievalSettings.budget, "--budget", help="At most this many references in the final set.")
KOption = typer.Option(RetrievalSettings.k, "-k", help="References retrieved per (sub-)query.")
ThresholdOption = typer.Option(FilterSettings.threshold, "--threshold", help="Absolute cosine threshold (default: "
                               "the DB encoder's, e.g. conse 0.30, open_clip 0.20).")
RelativeOption = typer.Option(FilterSettings.relative, "--relative",
                              help="Keep hits scoring this fraction of their sub-query's best hit.")


def check_inputs(paths: list[Path]) -> list[str]:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise RDMError(f"input image(s) not found: {', '.join(missing)}")
    return [str(p) for p in paths]


@app.command("decompose")
def decompose_command(
    prompt: str = typer.Argument(..., help="The ad prompt to split into sub-queries."),
    backend: str = typer.Option(RetrievalSettings.decomposer, "--backend",
                                help="llm (env RDM_LLM_BASE_URL / RDM_LLM_MODEL / RDM_LLM_API_KEY), "
                                     "offline (spaCy) or keybert (the seed's baseline keywords)."),
    as_json: bool = JsonOption,
) -> None:
    """Split a prompt into weighted sub-queries and a short summarised query."""
    from rdm.decompose import decompose

    result = decompose(prompt, backend)
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
    print_plan(result.plan)


@app.command("retrieve")
def retrieve_command(
    prompt: str = typer.Argument(..., help="The ad prompt."),
    mode: str = typer.Option("subquery+filter", "--mode", help="full | subquery | subquery+filter."),
    k: int = KOption,
    budget: Optional[int] = BudgetOption,
    threshold: Optional[float] = ThresholdOption,
    relative: float = RelativeOption,
    dedupe: float = typer.Option(FilterSettings.dedupe, "--dedupe",
                                 help="References more alike than this are near-duplicates."),
    coverage_select: bool = typer.Option(FilterSettings.coverage_select, "--coverage-select",
                                         help="One small set covering every sub-query instead of top-k each."),
    backend: str = DecomposerOption,
    retrieval: str = RetrievalOption,
    input_image: list[Path] = InputImageOption,
    db: Optional[Path] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Retrieve reference photos per sub-query, filter them, and show the conditioning plan."""
    from rdm.retrieve import plan_for

    if mode not in MODES or mode == "none":
        raise RDMError(f"unknown retrieval mode {mode!r}: use full, subquery or subquery+filter")
    store = open_store(db)
    filters = FilterSettings(threshold=threshold, relative=relative, dedupe=dedupe, coverage_select=coverage_select)
    result = plan_for(store, prompt, mode, input_images=check_inputs(input_image), k=k, budget=budget,
                      filters=filters, fusion=fusion_of(retrieval), decomposer_backend=backend)
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
    k: int = KOption,
    budget: Optional[int] = BudgetOption,
    backend: str = DecomposerOption,
    db: Optional[Path] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the conditioning plan (items and weights) of a seed experiment or a mode."""
    from rdm.retrieve import plan_for

    if preset not in RECIPES:
        raise RDMError(f"unknown preset {preset!r}: use one of {', '.join(RECIPES)}")
    store = open_store(db)
    result = plan_for(store, prompt, preset, input_images=check_inputs(input_image),
                      input_weights=input_weight or None, k=k, budget=budget, decomposer_backend=backend)
    if as_json:
        return print_json(result.plan.to_dict())
    print_plan(result.plan)


@app.command("eval-retrieval")
def eval_retrieval_command(
    queries: Path = typer.Argument(..., help="JSONL query file (e.g. data/queries/test/composite.jsonl)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="full | subquery | subquery+filter "
                                                            "(default: all three side by side)."),
    k: int = typer.Option(RetrievalSettings.k, "-k",
                          help="Cut-off for recall/precision/nDCG and hits per (sub-)query."),
    budget: int = typer.Option(EVAL_BUDGET, "--budget", help="References in the final set, the same for every mode."),
    backend: str = typer.Option(RetrievalSettings.decomposer, "--backend",
                                help="Sub-queries from offline (spaCy) or llm."),
    threshold: Optional[float] = ThresholdOption,
    relative: float = RelativeOption,
    retrieval: str = RetrievalOption,
    db: Optional[Path] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Score retrieval modes on a labelled query set at an equal reference budget."""
    from rdm.retrieve.evaluate import evaluate, format_table, load_queries

    if mode is not None and mode not in EVAL_MODES:
        raise RDMError(f"unknown mode {mode!r}: use one of {', '.join(EVAL_MODES)}")
    if backend not in ("offline", "llm"):
        raise RDMError(f"unknown backend {backend!r}: use offline or llm")
    store = open_store(db)
    labelled = load_queries(queries, store)
    filters, fusion = FilterSettings(threshold=threshold, relative=relative), fusion_of(retrieval)
    results = [evaluate(store, labelled, m, k=k, budget=budget, decomposer_backend=backend, filters=filters,
                        fusion=fusion) for m in ([mode] if mode else EVAL_MODES)]
    if as_json:
        return print_json(results[0].to_dict() if mode else [r.to_dict() for r in results])
    typer.echo(f"{queries}: {len(labelled)} queries, k={k}, budget={budget} references, "
               f"backend {backend}, encoder {store.encoder_name}; {fusion.describe()}")
    typer.echo(format_table(results))
