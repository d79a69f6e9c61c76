"""From a study's scored images to its figures, with the prompt as the unit: per mode and metric a mean over
prompts with a t 95% interval, every two modes compared on per-prompt differences with Holm's correction
(a primary comparison judged alone), per-requirement means over seeds, diversity, and plain notes.

``from rdm.study import ScoredImage, summarise`` is the public way to analyse scored images; the CLI, the
page, the report, the planner and bench/study_calibration.py all go through ``summarise``. Pure functions
over plain data, so a study's figures can always be recomputed from its images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Mapping, Sequence

import numpy as np

from rdm.study.stats import (ALPHA, CORRECTION, Primary, adjust, compare_paired, is_score, mean_ci, min_untied,
                             resolve_metric)

REQUIREMENTS_SUFFIX = "/requirements"  # a scorer's mean over the requirements, beside its full-prompt score
FIDELITY = "fidelity"
ANALYSIS_VERSION = 2  # 1: (prompt, seed) as the unit, no correction; 2: the prompt, Holm


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


@dataclass(frozen=True)
class Scores:
    """One mode's finite values of one metric by (prompt, seed), and how many NaN ones were left out."""

    values: Mapping[tuple[str, int], float]
    dropped: int

    @classmethod
    def of(cls, rows: Sequence[ScoredImage], metric: str) -> "Scores":
        having = [r for r in rows if metric in r.scores]
        ok = [r for r in having if is_score(r.scores[metric])]
        return cls({(r.prompt_id, r.seed): float(r.scores[metric]) for r in ok}, len(having) - len(ok))

    def by_prompt(self, keys: set[tuple[str, int]] | None = None) -> dict[str, float]:
        """The mean over each prompt's seeds (of ``keys`` only, when given)."""
        groups: dict[str, list[float]] = {}
        for (prompt_id, seed), value in sorted(self.values.items()):
            if keys is None or (prompt_id, seed) in keys:
                groups.setdefault(prompt_id, []).append(value)
        return {p: float(np.mean(v)) for p, v in groups.items()}


def summarise(images: Sequence[ScoredImage], modes: Sequence[str], requirements: Mapping[str, Sequence[str]],
              primary: Primary | None = None, alpha: float = ALPHA) -> dict:
    """``{"modes": {MODE: {"scores": {METRIC: Estimate}, "diversity", "images"}}, "pairs": [Paired],
    "per_requirement": [...], "notes": [...], "analysis": {...}}`` over the kept images; every estimate and
    test is over prompts (``n``), with the images behind it and the NaN scores left out."""
    kept = [i for i in images if i.kept]
    metrics = metrics_of(kept)
    by_mode = {m: [i for i in kept if i.mode == m] for m in modes}
    scores = {(m, metric): Scores.of(rows, metric) for m, rows in by_mode.items() for metric in metrics}
    out_modes = {}
    for mode, rows in by_mode.items():
        out_modes[mode] = {
            "scores": {metric: mean_ci(list(s.by_prompt().values()), images=len(s.values),
                                       dropped=s.dropped).to_dict()
                       for metric in metrics if (s := scores[(mode, metric)]).values or s.dropped},
            "diversity": mean_ci(_diversity(rows), images=sum(bool(r.embedding) for r in rows)).to_dict(),
            "images": len(rows)}
    if primary is not None:
        found = resolve_metric(primary.metric, metrics)  # `vqa` names the study's one VQA model
        primary = Primary(primary.a, primary.b, found or primary.metric)
    pairs = []
    for a, b in combinations(modes, 2):
        for metric in metrics:
            left, right = scores[(a, metric)], scores[(b, metric)]
            common = set(left.values) & set(right.values)
            if common:
                x, y = left.by_prompt(common), right.by_prompt(common)
                pairs.append(compare_paired(a, b, metric, [x[p] for p in x], [y[p] for p in x], images=len(common),
                                            dropped=left.dropped + right.dropped, alpha=alpha))
    pairs = adjust(pairs, primary)
    measured = primary is not None and any(p.role == "primary" for p in pairs)
    analysis = {**analysis_plan(alpha), "family": sum(p.role in ("family", "exploratory") for p in pairs),
                "primary": {"a": primary.a, "b": primary.b, "metric": primary.metric, "measured": measured}
                if primary else None,
                "min_prompts": min_untied(alpha), "prompts": len({i.prompt_id for i in kept}), "images": len(kept),
                "dropped": sum(s.dropped for s in scores.values())}
    return {"modes": out_modes, "pairs": [p.to_dict() for p in pairs],
            "per_requirement": _per_requirement(kept, requirements), "notes": _notes(analysis, len(modes)),
            "analysis": analysis}


def analysis_plan(alpha: float = ALPHA) -> dict:
    """How every study is analysed: what a plan registers, and what its study.json says it did."""
    return {"version": ANALYSIS_VERSION, "unit": "prompt", "alpha": alpha, "correction": CORRECTION,
            "interval": "t 95% over per-prompt means",
            "test": "two-sided Wilcoxon signed-rank on per-prompt differences (an exact sign test where too few "
                    "prompts differ for it to reach the level)"}


def _diversity(rows: Sequence[ScoredImage]) -> list[float]:
    """Per prompt: the mean pairwise cosine distance between the mode's images (needs two or more)."""
    out = []
    for prompt_id in sorted({r.prompt_id for r in rows}):
        vecs = np.asarray([r.embedding for r in rows if r.prompt_id == prompt_id and r.embedding], np.float64)
        if len(vecs) < 2:
            continue
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-12
        sims = vecs @ vecs.T
        out.append(float(np.mean(1.0 - sims[np.triu_indices(len(vecs), 1)])))
    return out


def _per_requirement(kept: Sequence[ScoredImage], requirements: Mapping[str, Sequence[str]]) -> list[dict]:
    """One prompt's requirement in one mode: the mean over its seeds (the unit here is the seed)."""
    rows: dict[tuple[str, str, str, str], list[float]] = {}
    for image in kept:
        texts = requirements.get(image.prompt_id, ())
        for scorer, values in image.requirements.items():
            for text, value in zip(texts, values):
                rows.setdefault((image.prompt_id, text, scorer, image.mode), []).append(value)
    return [{"prompt_id": p, "requirement": r, "scorer": s, "mode": m, **mean_ci(v, unit="seed").to_dict()}
            for (p, r, s, m), v in rows.items()]


def _notes(analysis: dict, modes: int) -> list[str]:
    prompts, need = analysis["prompts"], analysis["min_prompts"]
    notes = [f"Every figure is over prompts: a prompt's seeds (and kept candidates) are averaged first, so n is "
             f"the number of prompts ({prompts}); the {analysis['images']} images are behind it, not beside it."]
    if prompts < need:
        notes.append(f"Only {prompts} prompt(s): no paired test can reach p < {analysis['alpha']} (at least {need} "
                     "prompts that differ are needed); add prompts before drawing conclusions: more seeds do not "
                     "help.")
    elif prompts < 20:
        notes.append(f"{prompts} prompts: only large differences can show; intervals are wide "
                     "(`rdm study power` says how many prompts a given difference needs).")
    family, primary = analysis["family"], analysis["primary"]
    if primary and primary["measured"]:
        notes.append(f"Primary comparison {primary['a']} vs {primary['b']} on {primary['metric']}: judged alone at "
                     f"{analysis['alpha']}. The other {family} tests are exploratory, Holm-corrected among "
                     "themselves (p_adjusted); read them as leads for the next study.")
    else:
        if primary:
            notes.append(f"The primary comparison {primary['a']} vs {primary['b']} on {primary['metric']} was not "
                         "measured in this study: every test is judged as one family.")
        if family > 1:
            notes.append(f"{family} paired tests ({modes * (modes - 1) // 2} mode pairs on every metric): "
                         "p_adjusted is Holm-corrected across all of them and the verdicts use it.")
    if analysis["dropped"]:
        notes.append(f"{analysis['dropped']} NaN score(s) were left out of every figure (each figure counts its own "
                     "under 'dropped').")
    return notes
