"""A retrieval evaluation as one request (a query set, the retrieval kinds and modes to compare, k, budget,
decomposer and filter) that a background job runs, and its results saved to and read from a JSON file.

The query lines travel as text, so the job reads exactly what was checked when it was submitted; the
hits a miss shows are saved by id and score and get their images back from the DB when read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from rdm.common.files import atomic_write
from rdm.db import Hit, ImageStore
from rdm.errors import EvaluationError
from rdm.retrieve.evaluate import EvalResult, Miss, QueryOutcome, evaluate, parse_queries
from rdm.retrieve.modes import EVAL_BUDGET, FilterSettings, Fusion, RetrievalSettings


@dataclass(frozen=True)
class EvalRequest:
    query_set: str  # its name: "dev/composite", "upload:mine.jsonl"
    lines: str  # the JSONL text
    kinds: tuple[str, ...]
    modes: tuple[str, ...]
    k: int = RetrievalSettings.k
    budget: int = EVAL_BUDGET
    decomposer: str = RetrievalSettings.decomposer
    filters: FilterSettings = FilterSettings()

    @property
    def configurations(self) -> list[tuple[str, str]]:
        return [(kind, mode) for kind in self.kinds for mode in self.modes]

    def to_dict(self) -> dict:
        return {**asdict(self), "filters": asdict(self.filters)}

    @classmethod
    def from_dict(cls, data: dict) -> "EvalRequest":
        return cls(data["query_set"], data["lines"], tuple(data["kinds"]), tuple(data["modes"]), int(data["k"]),
                   int(data["budget"]), data["decomposer"], FilterSettings(**data["filters"]))


def run_evaluation(request: EvalRequest, store: ImageStore,
                   progress: Callable[[int, int, str], None] | None = None) -> list[EvalResult]:
    """Every configuration in turn; ``progress(done, total, what)`` after each query."""
    queries = parse_queries(request.lines, request.query_set, store)
    configs = request.configurations
    total = len(queries) * len(configs)
    results = []
    for n, (kind, mode) in enumerate(configs):
        def step(done: int, n: int = n, kind: str = kind, mode: str = mode) -> None:
            if progress is not None:
                progress(n * len(queries) + done, total, f"{kind} / {mode}: query {done} of {len(queries)}")
        results.append(evaluate(store, queries, mode, k=request.k, budget=request.budget, fusion=Fusion(kind),
                                decomposer_backend=request.decomposer, filters=request.filters, progress=step))
    return results


def save_results(results: list[EvalResult], path: Path) -> None:
    data = [{**r.to_dict(), "outcomes": [
        {"query": o.query, "references": list(o.references), "scores": o.scores,
         "misses": [{"concept": m.concept, "why": m.why, "subquery": m.subquery,
                     "best": [h.to_dict() for h in m.best]} for m in o.misses]}
        for o in r.outcomes]} for r in results]
    atomic_write(path, json.dumps(data).encode("utf-8"))


def load_results(path: Path, store: ImageStore) -> list[EvalResult]:
    """The results saved at ``path``; a miss's hits whose images left the DB since are left out."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"cannot read the evaluation results {path}: {exc}") from exc
    ids = {h["id"] for r in data for o in r["outcomes"] for m in o["misses"] for h in m["best"]}
    records = {r.id: r for r in store.records(ids=sorted(ids), include_deleted=True)} if ids else {}

    def hit(h: dict) -> Hit:
        return Hit(h["id"], h["score"], records[h["id"]], h.get("subquery"), h.get("image_score"),
                   h.get("text_score"), tuple(h.get("matched", ())), h.get("text_words", 0))

    return [EvalResult(r["mode"], r["k"], r["budget"], r["metrics"], tuple(
        QueryOutcome(o["query"], tuple(o["references"]), o["scores"], tuple(
            Miss(m["concept"], m["why"], m["subquery"], tuple(hit(h) for h in m["best"] if h["id"] in records))
            for m in o["misses"]))
        for o in r["outcomes"]), r["retrieval"]) for r in data]
