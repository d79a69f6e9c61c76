"""Telling runs apart: a unique, readable label per run (for pickers), and what differs between runs:
every recorded setting (prompt, generation, model, retrieval options, DB, product) flattened to a dotted
name, kept where the runs disagree, so a comparison says what changed."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from rdm.runs.record import RunRecord


@dataclass(frozen=True)
class SettingDiff:
    name: str  # dotted, e.g. "settings.steps", "options.filters.relative"
    values: tuple[str | None, ...]  # one per run, in the order given; None: that run has no such setting


PROMPT_START = 48  # characters of the prompt a label shows


def run_label(run: RunRecord) -> str:
    """When (UTC, to the second), the modes, the strength of a variation and how the prompt starts."""
    prompt = run.prompt if len(run.prompt) <= PROMPT_START else run.prompt[:PROMPT_START - 1] + "…"
    strength = f" · strength {run.settings.strength:g}" if run.variation_of else ""
    return f"{run.created[:19].replace('T', ' ')} · {', '.join(m.mode for m in run.modes)}{strength} · {prompt}"


def run_labels(runs: Sequence[RunRecord]) -> dict[str, str]:
    """Run id -> label, every label distinct: runs that share one also show their id. (A picker tells
    its options apart by label, so two equal labels would open the same run.)"""
    labels = {r.id: run_label(r) for r in runs}
    counts = Counter(labels.values())
    return {run_id: f"{text} · {run_id}" if counts[text] > 1 else text for run_id, text in labels.items()}


def recorded_settings(run: RunRecord) -> dict[str, str | None]:
    """Every setting of ``run`` as dotted name -> value text."""
    return dict(_flatten({
        "prompt": run.prompt, "settings": run.settings.to_dict(), "generator": run.generator.to_dict(),
        "options": run.options, "db": run.db.to_dict() if run.db else None, "scorer": run.scorer,
        "variation_of": run.variation_of, "product": run.product.to_dict() if run.product else None}))


def settings_diff(runs: Sequence[RunRecord]) -> list[SettingDiff]:
    """The settings whose values are not the same in every run, by name."""
    flat = [recorded_settings(r) for r in runs]
    names = sorted({name for f in flat for name in f})
    diffs = [SettingDiff(name, tuple(f.get(name) for f in flat)) for name in names]
    return [d for d in diffs if len(set(d.values)) > 1]


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str | None]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif value is None:
        yield prefix, None
    elif isinstance(value, (list, tuple)):
        yield prefix, json.dumps(list(value))
    else:
        yield prefix, str(value)
