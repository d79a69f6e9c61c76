"""A retrieval evaluation saved as a baseline, and the change of every metric and query against it:
the proof that curating the DB (a caption, a tag, a deleted photo) made retrieval better or worse.

A baseline is a JSON file per query set (``<runs dir>/retrieval-baselines/<set>.json``), written
atomically, so it survives a reload of the dashboard and can be compared days later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from rdm.errors import EvaluationError
from rdm.retrieve.evaluate import EvalResult
from rdm.common.files import atomic_write, slug

FOLDER = "retrieval-baselines"


@dataclass(frozen=True)
class Baseline:
    query_set: str
    saved_at: str
    db_revision: int  # the DB's revision when it was saved: what the curation since then changed
    metrics: dict[str, dict[str, float | None]]  # configuration ("hybrid / subquery+filter") -> metrics
    queries: dict[str, dict[str, dict[str, float]]]  # configuration -> query -> its scores


@dataclass(frozen=True)
class Delta:
    config: str
    name: str  # a metric, or a query
    metric: str
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        return None if self.before is None or self.after is None else round(self.after - self.before, 4)


def config_key(result: EvalResult) -> str:
    return f"{result.retrieval} / {result.mode}"


def baseline_of(results: Sequence[EvalResult], query_set: str, db_revision: int) -> Baseline:
    return Baseline(query_set=query_set, saved_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    db_revision=db_revision,
                    metrics={config_key(r): dict(r.metrics) for r in results},
                    queries={config_key(r): {o.query: dict(o.scores) for o in r.outcomes} for r in results})


def baseline_file(runs_dir: str | Path, query_set: str) -> Path:
    return Path(runs_dir) / FOLDER / f"{slug(query_set, default='queries')}.json"


def save_baseline(baseline: Baseline, runs_dir: str | Path) -> Path:
    path = baseline_file(runs_dir, baseline.query_set)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(asdict(baseline), indent=1).encode())
    return path


def load_baseline(runs_dir: str | Path, query_set: str) -> Baseline | None:
    """The saved baseline of ``query_set``; None when there is none."""
    path = baseline_file(runs_dir, query_set)
    if not path.is_file():
        return None
    try:
        return Baseline(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise EvaluationError(f"the baseline {path} cannot be read ({exc}): save a new one") from exc


def metric_deltas(results: Sequence[EvalResult], baseline: Baseline) -> list[Delta]:
    """Every metric of every configuration evaluated now and in the baseline."""
    return [Delta(config_key(r), name, name, baseline.metrics[config_key(r)].get(name), value)
            for r in results if config_key(r) in baseline.metrics
            for name, value in r.metrics.items() if value is not None]


def query_deltas(results: Sequence[EvalResult], baseline: Baseline) -> list[Delta]:
    """The queries whose scores moved since the baseline, per configuration and metric."""
    moved = []
    for r in results:
        before = baseline.queries.get(config_key(r), {})
        for outcome in r.outcomes:
            for metric, value in outcome.scores.items():
                old = before.get(outcome.query, {}).get(metric)
                if old is not None and round(value - old, 4):
                    moved.append(Delta(config_key(r), outcome.query, metric, old, value))
    return moved
