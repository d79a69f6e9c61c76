"""Retrieval quality of the three modes on the shipped query sets, at an equal reference budget.

    .venv/bin/python bench/retrieval.py [--db data/demo-db] [-k 5] [--budget 5] [--backend offline]

Prints the modes side by side per query set, then an ablation of subquery+filter (which part of
the method buys the coverage), the concepts each mode misses on the composite set, and the
time per query. Numbers depend on the DB's encoder; the header names it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from rdm.evaluate import EVAL_MODES, EvalResult, evaluate, format_table, load_queries
from rdm.retrieve import FilterSettings
from rdm.settings import REPO_ROOT, load_settings
from rdm.db import ImageStore

QUERY_SETS = (REPO_ROOT / "data" / "queries" / "single.jsonl", REPO_ROOT / "data" / "queries" / "composite.jsonl")

# What each part of the filter contributes to coverage (each row switches parts off).
ABLATIONS = {
    "coverage-first budget only": FilterSettings(threshold=-1.0, relative=0.0, dedupe=1.0),
    "+ absolute threshold": FilterSettings(relative=0.0, dedupe=1.0),
    "+ relative threshold": FilterSettings(dedupe=1.0),
    "+ near-duplicates (default)": FilterSettings(),
    "coverage_select=True": FilterSettings(coverage_select=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--budget", type=int, default=5)
    parser.add_argument("--backend", default="offline", choices=("offline", "llm"))
    args = parser.parse_args()

    # 1. The DB and the query sets.
    store = ImageStore.open(load_settings(db=args.db).db)
    store.encoder.encode_texts(["warm-up"])  # model loading is not retrieval time
    sets = {path.stem: load_queries(path, store) for path in QUERY_SETS}
    print(f"DB {store.path}: {store.stats().live} images, encoder {store.encoder_name}, "
          f"threshold {FilterSettings().absolute_for(store.encoder_name):.2f}; "
          f"k={args.k}, budget={args.budget}, backend {args.backend}\n")

    # 2. The three modes side by side, timed.
    results: dict[str, list[EvalResult]] = {}
    for name, queries in sets.items():
        timed = []
        for mode in EVAL_MODES:
            started = time.perf_counter()
            result = evaluate(store, queries, mode, k=args.k, budget=args.budget, decomposer_backend=args.backend)
            timed.append((result, (time.perf_counter() - started) / len(queries)))
        results[name] = [r for r, _ in timed]
        print(f"{name} ({len(queries)} queries)")
        print(format_table(results[name]))
        print(f"{'ms / query':<14}" + "".join(f"{1000 * s:>17.1f}" for _, s in timed) + "\n")

    # 3. Ablation on the composite set: where subquery+filter's coverage comes from.
    composite = sets["composite"]
    print("subquery+filter ablation on composite, coverage:")
    plain = next(r for r in results["composite"] if r.mode == "subquery")
    print(f"  {'subquery (score-ranked budget)':<34}{plain.metrics['coverage']:.3f}")
    for label, filters in ABLATIONS.items():
        cov = evaluate(store, composite, "subquery+filter", k=args.k, budget=args.budget,
                       decomposer_backend=args.backend, filters=filters).metrics["coverage"]
        print(f"  {label:<34}{cov:.3f}")
    loose = replace(FilterSettings(), threshold=0.25)
    cov = evaluate(store, composite, "subquery+filter", k=args.k, budget=args.budget,
                   decomposer_backend=args.backend, filters=loose).metrics["coverage"]
    print(f"  {'threshold 0.25':<34}{cov:.3f}\n")

    # 4. Concepts each mode leaves out, per composite prompt.
    print("composite concepts missed (mode: concepts):")
    for i, q in enumerate(composite):
        print(f"  {q.query}")
        for result in results["composite"]:
            found = set(result.outcomes[i].references)
            missed = [c.name for c in q.concepts if not c.relevant & found]
            print(f"    {result.mode:<16} {', '.join(missed) or '-'}")


if __name__ == "__main__":
    main()
