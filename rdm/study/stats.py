"""The statistics of a study: means with bootstrap 95% intervals, and paired comparisons of two modes on
the same (prompt, seed) with a win rate and a paired test, each saying when there is too little to tell.

scipy does the resampling and the tests; this module only decides what is compared with what.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same study gives the same intervals
MIN_PAIRS = 6  # below this no two-sided paired test can reach p < 0.05 (a sign test's best is 2/2^5)
ALPHA = 0.05


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci95: tuple[float, float] | None  # None: fewer than two values
    n: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": list(self.ci95) if self.ci95 else None, "n": self.n}


def mean_ci(values: Sequence[float]) -> Estimate:
    """The mean and a percentile bootstrap 95% interval (fixed seed)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], np.float64)
    if len(x) == 0:
        return Estimate(float("nan"), None, 0)
    mean = round(float(x.mean()), 4)
    if len(x) < 2 or np.ptp(x) == 0:
        return Estimate(mean, (mean, mean) if len(x) >= 2 else None, len(x))
    res = stats.bootstrap((x,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=0.95,
                          method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    return Estimate(mean, (round(float(res.confidence_interval.low), 4),
                           round(float(res.confidence_interval.high), 4)), len(x))


@dataclass(frozen=True)
class Paired:
    """Mode ``a`` against mode ``b`` under one scorer, over the (prompt, seed) pairs both have."""

    a: str
    b: str
    scorer: str
    n: int
    wins: int  # a scored higher
    losses: int
    ties: int
    win_rate: float | None  # (wins + ties / 2) / n
    mean_difference: float | None  # a - b
    p_value: float | None  # Wilcoxon signed-rank, two-sided (sign test when Wilcoxon cannot run)
    sign_p: float | None  # exact sign test over the untied pairs
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


def compare_paired(a: str, b: str, scorer: str, a_values: Sequence[float], b_values: Sequence[float]) -> Paired:
    x, y = np.asarray(a_values, np.float64), np.asarray(b_values, np.float64)
    if x.shape != y.shape:
        raise ValueError("paired values must come in pairs: one of a and one of b per (prompt, seed)")
    n = len(x)
    diff = x - y
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    ties = n - wins - losses
    if n == 0:
        return Paired(a, b, scorer, 0, 0, 0, 0, None, None, None, None, "no pairs: nothing to compare")
    untied = wins + losses
    sign_p = float(stats.binomtest(wins, untied, 0.5).pvalue) if untied else 1.0
    p = sign_p
    if untied >= MIN_PAIRS:
        p = float(stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
    win_rate = round((wins + ties / 2) / n, 4)
    verdict = _verdict(a, b, n, p, float(diff.mean()))
    return Paired(a, b, scorer, n, wins, losses, ties, win_rate, round(float(diff.mean()), 4),
                  round(p, 4), round(sign_p, 4), verdict)


def _verdict(a: str, b: str, n: int, p: float, mean_difference: float) -> str:
    if n < MIN_PAIRS:
        return f"too few pairs to tell ({n}; at least {MIN_PAIRS} are needed for p < {ALPHA})"
    if p >= ALPHA:
        return f"no difference this study can detect (p = {p:.3f}, {n} pairs)"
    better, worse = (a, b) if mean_difference > 0 else (b, a)
    return f"{better} scores higher than {worse} (p = {p:.3f}, {n} pairs)"
