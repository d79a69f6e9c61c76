"""From a study's scored images to its figures: per mode and metric a mean with a 95% interval, every two
modes compared on the same (prompt, seed), per-requirement means, diversity, and plain notes.

Pure functions over plain data, so ``rdm study show`` recomputes exactly what ``rdm study run`` wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np

from rdm.study.stats import MIN_PAIRS, compare_paired, mean_ci

REQUIREMENTS_SUFFIX = "/requirements"  # a scorer's mean over the requirements, beside its full-prompt score
FIDELITY = "fidelity"


@dataclass(frozen=True)
class ScoredImage:
    """One generated image of a study and what the scorers said about it."""

    prompt_id: str
    mode: str
    seed: int  # the image's own seed: the same in every mode, so images pair on (prompt, seed)
    candidate: int
    kept: bool  # best-of-N: the candidate that represents (mode, prompt, seed)
    file: str  # relative to the study folder
    run_id: str
    scores: Mapping[str, float] = field(default_factory=dict)  # metric -> value (see ``metrics_of``)
    requirements: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # scorer -> one per requirement
    embedding: tuple[float, ...] = ()  # the first CLIP scorer's image embedding, for diversity

    def to_dict(self) -> dict:
        return {"prompt_id": self.prompt_id, "mode": self.mode, "seed": self.seed, "candidate": self.candidate,
                "kept": self.kept, "file": self.file, "run_id": self.run_id, "scores": dict(self.scores),
                "requirements": {k: list(v) for k, v in self.requirements.items()},
                "embedding": [round(v, 5) for v in self.embedding]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ScoredImage":
        return cls(str(d["prompt_id"]), str(d["mode"]), int(d["seed"]), int(d.get("candidate", 0)),
                   bool(d.get("kept", True)), str(d["file"]), str(d.get("run_id", "")),
                   {k: float(v) for k, v in d.get("scores", {}).items()},
                   {k: tuple(float(x) for x in v) for k, v in d.get("requirements", {}).items()},
                   tuple(float(v) for v in d.get("embedding", ())))


def metrics_of(images: Sequence[ScoredImage]) -> list[str]:
    """Every metric the images carry, scorers first, in a stable order."""
    seen: dict[str, None] = {}
    for image in images:
        for name in image.scores:
            seen.setdefault(name, None)
    return sorted(seen, key=lambda m: (m == FIDELITY, m.endswith(REQUIREMENTS_SUFFIX), m))


def summarise(images: Sequence[ScoredImage], modes: Sequence[str],
              requirements: Mapping[str, Sequence[str]]) -> dict:
    """``{"modes": {MODE: {"scores": {METRIC: {mean, ci95, n}}, "diversity"}}, "pairs": [...],
    "per_requirement": [...], "notes": [...]}`` over the kept images."""
    kept = [i for i in images if i.kept]
    metrics = metrics_of(kept)
    by_mode = {m: [i for i in kept if i.mode == m] for m in modes}
    out_modes = {}
    for mode, rows in by_mode.items():
        out_modes[mode] = {
            "scores": {metric: mean_ci([i.scores[metric] for i in rows if metric in i.scores]).to_dict()
                       for metric in metrics if any(metric in i.scores for i in rows)},
            "diversity": mean_ci(_diversity(rows)).to_dict(),
            "images": len(rows)}
    pairs = []
    for a, b in combinations(modes, 2):
        for metric in metrics:
            left = {(i.prompt_id, i.seed): i.scores[metric] for i in by_mode[a] if metric in i.scores}
            right = {(i.prompt_id, i.seed): i.scores[metric] for i in by_mode[b] if metric in i.scores}
            common = sorted(set(left) & set(right))
            if common:
                pairs.append(compare_paired(a, b, metric, [left[k] for k in common],
                                            [right[k] for k in common]).to_dict())
    return {"modes": out_modes, "pairs": pairs, "per_requirement": _per_requirement(kept, requirements),
            "notes": _notes(kept, modes)}


def _diversity(rows: Sequence[ScoredImage]) -> list[float]:
    """Per prompt: the mean pairwise cosine distance between the mode's images (needs two or more)."""
    out = []
    for prompt_id in sorted({r.prompt_id for r in rows}):
        vecs = np.asarray([r.embedding for r in rows if r.prompt_id == prompt_id and r.embedding], np.float64)
        if len(vecs) < 2:
            continue
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12
        sims = vecs @ vecs.T
        upper = sims[np.triu_indices(len(vecs), 1)]
        out.append(round(float(np.mean(1.0 - upper)), 4))
    return out


def _per_requirement(kept: Sequence[ScoredImage], requirements: Mapping[str, Sequence[str]]) -> list[dict]:
    rows: dict[tuple[str, str, str, str], list[float]] = {}
    for image in kept:
        texts = requirements.get(image.prompt_id, ())
        for scorer, values in image.requirements.items():
            for text, value in zip(texts, values):
                rows.setdefault((image.prompt_id, text, scorer, image.mode), []).append(value)
    return [{"prompt_id": p, "requirement": r, "scorer": s, "mode": m, **mean_ci(v).to_dict()}
            for (p, r, s, m), v in rows.items()]


def _notes(kept: Sequence[ScoredImage], modes: Sequence[str]) -> list[str]:
    units = {(i.prompt_id, i.seed) for i in kept}
    notes = []
    if len(units) < MIN_PAIRS:
        notes.append(f"Only {len(units)} (prompt, seed) pairs: too few for any paired test to reach p < 0.05 "
                     f"(at least {MIN_PAIRS}); add prompts or seeds before drawing conclusions.")
    elif len(units) < 30:
        notes.append(f"{len(units)} (prompt, seed) pairs: only large differences can show; intervals are wide.")
    if len(modes) > 2:
        notes.append(f"{len(modes) * (len(modes) - 1) // 2} mode pairs per metric are tested: read single p-values "
                     "near 0.05 with care (no correction for multiple comparisons is applied).")
    return notes
