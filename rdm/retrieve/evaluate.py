"""Retrieval quality on labelled query sets, every mode at the same reference budget.

A query file is JSONL. A single-concept line is ``{"query", "relevant": [...]}``, scored with
recall@k, precision@k and nDCG@k over the final reference set in rank order. A composite
(multi-concept ad-style) line is ``{"query", "concepts": [{"name", "relevant": [...]}]}``, scored
with concept coverage: the share of its concepts with at least one relevant photo in the final
set. ``relevant`` entries are DB ids (numbers) or original file names.

precision@k divides by the number of references returned (at most k), not by k: a filter that
returns two right photos instead of five with three wrong ones conditions the generator better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from rdm.decompose import LLMConfig
from rdm.retrieve.modes import EVAL_BUDGET, FilterSettings, Fusion, RetrievalSettings
from rdm.db.records import Hit
from rdm.db.texts import query_words
from rdm.retrieve.references import Retrieval, plan_for
from rdm.db import ImageStore
from rdm.errors import EvaluationError
from rdm.common.jsonl import json_objects



@dataclass(frozen=True)
class Concept:
    name: str
    relevant: frozenset[int]  # DB ids


@dataclass(frozen=True)
class EvalQuery:
    query: str
    relevant: frozenset[int] = frozenset()  # single-concept lines
    concepts: tuple[Concept, ...] = ()  # composite lines

    @property
    def composite(self) -> bool:
        return bool(self.concepts)


@dataclass(frozen=True)
class Miss:
    """A concept (or a single-concept query) the final reference set does not show, and why."""
    concept: str
    why: str  # NOT_DECOMPOSED | NOT_RETRIEVED | "filtered: <the filter's reason>"
    subquery: str | None  # the sub-query meant to find it (None: full prompt, or none named it)
    best: tuple[Hit, ...]  # what that search found instead (or the filtered right photo first)


NOT_DECOMPOSED = "not decomposed: no sub-query names it"
NOT_RETRIEVED = "not retrieved in the top k"


@dataclass(frozen=True)
class QueryOutcome:
    query: str
    references: tuple[int, ...]  # the final reference set, in rank order
    scores: dict[str, float]  # this line's metrics
    misses: tuple[Miss, ...] = ()


@dataclass(frozen=True)
class EvalResult:
    mode: str
    k: int
    budget: int
    metrics: dict[str, float | None]  # recall@k, precision@k, ndcg@k, coverage; None: no such lines
    outcomes: tuple[QueryOutcome, ...]
    retrieval: str = "hybrid"  # the Fusion kind the scores came from

    def to_dict(self) -> dict:
        return {"mode": self.mode, "k": self.k, "budget": self.budget, "metrics": self.metrics,
                "retrieval": self.retrieval}


# --- metrics (pure) ---

def recall_at_k(ranked: Sequence[int], relevant: frozenset[int], k: int) -> float:
    """Capped recall (BEIR's R_cap@k): the right photos found over as many as k slots can hold, so a
    query with 28 right photos is fully answered by 5 of them."""
    return len(set(ranked[:k]) & relevant) / min(len(relevant), k)


def precision_at_k(ranked: Sequence[int], relevant: frozenset[int], k: int) -> float:
    top = ranked[:k]
    return len(set(top) & relevant) / len(top) if top else 0.0


def ndcg_at_k(ranked: Sequence[int], relevant: frozenset[int], k: int) -> float:
    dcg = sum(1.0 / math.log2(rank + 2) for rank, i in enumerate(ranked[:k]) if i in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return dcg / ideal


def coverage(references: Iterable[int], concepts: Sequence[Concept]) -> float:
    found = set(references)
    return sum(bool(c.relevant & found) for c in concepts) / len(concepts)


# --- query files ---

def load_queries(path: str | Path, store: ImageStore) -> tuple[EvalQuery, ...]:
    """Read a JSONL query file; file names become the DB's ids."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"cannot read the query file {path}: {exc}") from exc
    return parse_queries(text, str(path), store)


def parse_queries(text: str, path: str, store: ImageStore) -> tuple[EvalQuery, ...]:
    """Query lines (JSONL text, e.g. an upload) named ``path`` in messages; file names become ids."""
    lines = text.splitlines()
    ids_by_name: dict[str, set[int]] = {}
    for rec in store.records():
        ids_by_name.setdefault(rec.filename, set()).add(rec.id)
    live_ids = {i for ids in ids_by_name.values() for i in ids}

    def resolve(entries: object, where: str) -> frozenset[int]:
        if not isinstance(entries, list) or not entries:
            raise EvaluationError(f"{where}: 'relevant' must be a non-empty list of DB ids or file names")
        ids, unknown = set(), []
        for e in entries:
            found = {e} & live_ids if isinstance(e, int) else ids_by_name.get(str(e), set())
            ids |= found
            if not found:
                unknown.append(e)
        if unknown:
            raise EvaluationError(f"{where}: not in the DB at {store.path}: {unknown}; "
                                  "label with its file names or ids, or ingest the photos first")
        return frozenset(ids)

    queries = []
    for where, data in json_objects(lines, path, EvaluationError):
        if not str(data.get("query", "")).strip():
            raise EvaluationError(f"{where}: each line needs a non-empty 'query'")
        if "concepts" in data:
            concepts = data["concepts"]
            if not isinstance(concepts, list) or not concepts:
                raise EvaluationError(f"{where}: 'concepts' must be a non-empty list")
            queries.append(EvalQuery(data["query"], concepts=tuple(
                Concept(str(c.get("name", "")), resolve(c.get("relevant"), f"{where} concept {c.get('name')!r}"))
                for c in concepts if isinstance(c, dict))))
        elif "relevant" in data:
            queries.append(EvalQuery(data["query"], relevant=resolve(data["relevant"], where)))
        else:
            raise EvaluationError(f"{where}: give 'relevant' (one concept) or 'concepts' (several)")
    if not queries:
        raise EvaluationError(f"{path} holds no queries")
    return tuple(queries)


# --- evaluation ---

def evaluate(store: ImageStore, queries: Sequence[EvalQuery], mode: str, *, k: int = RetrievalSettings.k,
             budget: int = EVAL_BUDGET, decomposer_backend: str = RetrievalSettings.decomposer,
             llm: LLMConfig | None = None, filters: FilterSettings = FilterSettings(),
             fusion: Fusion = RetrievalSettings.fusion,
             progress: Callable[[int], None] | None = None) -> EvalResult:
    """Run every query in ``mode`` with at most ``budget`` references and score the final sets;
    ``progress(done)`` after each query."""
    outcomes = []
    for done, q in enumerate(queries, 1):
        # 1. The final reference set, duplicates removed, in rank order.
        retrieval = plan_for(store, q.query, mode, k=k, budget=budget, filters=filters, fusion=fusion,
                             decomposer_backend=decomposer_backend, llm=llm)
        ranked = tuple(dict.fromkeys(h.id for h in retrieval.kept))

        # 2. This line's scores.
        if q.composite:
            scores = {"coverage": coverage(ranked, q.concepts)}
        else:
            scores = {f"recall@{k}": recall_at_k(ranked, q.relevant, k),
                      f"precision@{k}": precision_at_k(ranked, q.relevant, k),
                      f"ndcg@{k}": ndcg_at_k(ranked, q.relevant, k)}
        outcomes.append(QueryOutcome(q.query, ranked, scores, diagnose(q, retrieval)))
        if progress is not None:
            progress(done)

    # 3. Means over the lines that have each metric.
    names = (f"recall@{k}", f"precision@{k}", f"ndcg@{k}", "coverage")
    metrics = {}
    for name in names:
        values = [o.scores[name] for o in outcomes if name in o.scores]
        metrics[name] = round(sum(values) / len(values), 4) if values else None
    return EvalResult(mode=mode, k=k, budget=budget, metrics=metrics, outcomes=tuple(outcomes), retrieval=fusion.kind)


def diagnose(query: EvalQuery, retrieval: Retrieval) -> tuple[Miss, ...]:
    """Why each concept of ``query`` without a relevant photo in the final set was missed."""
    kept = {h.id for h in retrieval.kept}
    concepts = query.concepts or (Concept(query.query, query.relevant),)
    misses = []
    for concept in concepts:
        if concept.relevant & kept:
            continue
        # 1. Retrieved, then filtered: the filter's reason for the best-scoring right photo.
        dropped = sorted(((h, reason) for h, reason in retrieval.filtered if h.id in concept.relevant),
                         key=lambda pair: -pair[0].score)
        if dropped:
            hit, reason = dropped[0]
            misses.append(Miss(concept.name, f"filtered: {reason}", hit.subquery, (hit,)))
            continue
        # 2. Not found: by the sub-query that names the concept, if one does.
        subquery = _naming_subquery(concept.name, retrieval)
        if retrieval.decomposition is not None and retrieval.mode != "full" and subquery is None:
            misses.append(Miss(concept.name, NOT_DECOMPOSED, None, ()))
            continue
        found = tuple(h for h in retrieval.hits if h.subquery == subquery)[:3]
        misses.append(Miss(concept.name, NOT_RETRIEVED, subquery, found))
    return tuple(misses)


def _naming_subquery(name: str, retrieval: Retrieval) -> str | None:
    """The sub-query sharing most words with a concept's name ("solar panel" ~ "row of solar panels")."""
    if retrieval.decomposition is None or retrieval.mode == "full":
        return None
    stems = {w.rstrip("s") for w in query_words(name)}
    shared = [(len(stems & {w.rstrip("s") for w in query_words(q.text)}), q.text)
              for q in retrieval.decomposition.subqueries]
    best = max(shared, default=(0, None))
    return best[1] if best[0] else None


def format_table(results: Sequence[EvalResult]) -> str:
    """The modes side by side, one metric a row."""
    header = f"{'metric':<14}" + "".join(f"{r.mode:>17}" for r in results)
    rows = [header]
    for name in results[0].metrics:
        cells = "".join(f"{'-' if r.metrics[name] is None else f'{r.metrics[name]:.3f}':>17}" for r in results)
        rows.append(f"{name:<14}{cells}")
    return "\n".join(rows)
