"""Retrieval quality: image / text / hybrid x full / subquery / subquery+filter, on the dev and test splits.

    .venv/bin/python bench/retrieval.py [--db data/demo-db] [-k 5] [--budget 5] [--backend offline]
                                        [--split dev --split test] [--tune] [--ablation] [--misses]

Every mode gets the same reference budget. Tune only on dev (``--tune`` sweeps the hybrid text
weight there and never reads test); test is the held-out judge. Prints the metric tables per split
and retrieval kind, the concepts each configuration misses on the composite sets (``--misses``), and
an ablation of the filter (``--ablation``). Numbers depend on the DB's encoder; the header names it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rdm.db import ImageStore
from rdm.retrieve.evaluate import EvalQuery, EvalResult, evaluate, format_table, load_queries
from rdm.retrieve import EVAL_MODES, RETRIEVAL_KINDS, FilterSettings, Fusion
from rdm.settings import REPO_ROOT, load_settings

QUERIES = REPO_ROOT / "data" / "queries"
TUNE_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)
TUNE_RELATIVE = (0.5, 0.6, 0.7, 0.8)
TUNE_DEDUPE = (0.95, 0.98, 1.0)

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
    parser.add_argument("--split", action="append", choices=("dev", "test"), help="default: both")
    parser.add_argument("--retrieval", action="append", choices=RETRIEVAL_KINDS, help="default: all three")
    parser.add_argument("--tune", action="store_true", help="sweep the hybrid text weight on dev only")
    parser.add_argument("--ablation", action="store_true", help="the filter's parts, hybrid, per split")
    parser.add_argument("--misses", action="store_true", help="composite concepts each configuration misses")
    args = parser.parse_args()

    # 1. The DB and the query sets.
    store = ImageStore.open(load_settings(db=args.db).db)
    store.encoder.encode_texts(["warm-up"])  # model loading is not retrieval time
    print(f"DB {store.path}: {store.stats().live} images, encoder {store.encoder_name}; "
          f"k={args.k}, budget={args.budget}, backend {args.backend}; hybrid: {Fusion().describe()}\n")
    run = dict(k=args.k, budget=args.budget, decomposer_backend=args.backend)

    if args.tune:
        tune(store, load_split(store, "dev"), run)
        return

    for split in args.split or ("dev", "test"):
        sets = load_split(store, split)
        # 2. The modes side by side, per retrieval kind, timed.
        results: dict[tuple[str, str], list[EvalResult]] = {}
        for kind in args.retrieval or RETRIEVAL_KINDS:
            for name, queries in sets.items():
                timed = []
                for mode in EVAL_MODES:
                    started = time.perf_counter()
                    result = evaluate(store, queries, mode, fusion=Fusion(kind), **run)
                    timed.append((result, (time.perf_counter() - started) / len(queries)))
                results[kind, name] = [r for r, _ in timed]
                print(f"{split}/{name} ({len(queries)} queries), retrieval {kind}")
                print(format_table(results[kind, name]))
                print(f"{'ms / query':<14}" + "".join(f"{1000 * s:>17.1f}" for _, s in timed) + "\n")

        # 3. Concepts each configuration leaves out, per composite prompt.
        if args.misses and "composite" in sets:
            print(f"{split}/composite concepts missed (retrieval mode: concepts):")
            for i, q in enumerate(sets["composite"]):
                print(f"  {q.query}")
                for (kind, name), row in results.items():
                    if name == "composite":
                        for result in row:
                            found = set(result.outcomes[i].references)
                            missed = [c.name for c in q.concepts if not c.relevant & found]
                            print(f"    {kind:<7}{result.mode:<16} {', '.join(missed) or '-'}")
            print()

        # 4. Ablation: where hybrid subquery+filter's coverage comes from.
        if args.ablation and "composite" in sets:
            print(f"{split}/composite, hybrid subquery+filter ablation, coverage:")
            for label, filters in ABLATIONS.items():
                cov = evaluate(store, sets["composite"], "subquery+filter", filters=filters, **run).metrics["coverage"]
                print(f"  {label:<34}{cov:.3f}")
            print()


def load_split(store: ImageStore, split: str) -> dict[str, tuple[EvalQuery, ...]]:
    return {path.stem: load_queries(path, store) for path in sorted((QUERIES / split).glob("*.jsonl"))}


def tune(store: ImageStore, dev: dict[str, tuple[EvalQuery, ...]], run: dict) -> None:
    """The hybrid text weight against dev's composite coverage and single recall (subquery+filter)."""
    print("dev only: hybrid text weight sweep, subquery+filter (and full, for the margin)")
    print(f"{'weight':<8}{'coverage':>10}{'full cov':>10}{'recall@k':>10}{'full rec':>10}")
    for weight in TUNE_WEIGHTS:
        fusion = Fusion("hybrid", text_weight=weight)
        row = []
        for name in ("composite", "single"):
            metric = "coverage" if name == "composite" else f"recall@{run['k']}"
            for mode in ("subquery+filter", "full"):
                row.append(evaluate(store, dev[name], mode, fusion=fusion, **run).metrics[metric])
        print(f"{weight:<8}" + "".join(f"{v:>10.3f}" for v in row))
    print(f"\ndefault text weight: {Fusion().text_weight}")

    print("\ndev only: the filter on hybrid scores (default weight), subquery+filter")
    print(f"{'relative':<10}{'dedupe':<8}{'coverage':>10}{'recall@k':>10}{'prec@k':>10}")
    for relative in TUNE_RELATIVE:
        for dedupe in TUNE_DEDUPE:
            filters = FilterSettings(relative=relative, dedupe=dedupe)
            cov = evaluate(store, dev["composite"], "subquery+filter", filters=filters, **run).metrics["coverage"]
            single = evaluate(store, dev["single"], "subquery+filter", filters=filters, **run).metrics
            recall, precision = (single[f"{m}@{run['k']}"] for m in ("recall", "precision"))
            print(f"{relative:<10}{dedupe:<8}{cov:>10.3f}{recall:>10.3f}{precision:>10.3f}")
    print(f"default: relative {FilterSettings().relative}, dedupe {FilterSettings().dedupe}")


if __name__ == "__main__":
    main()
