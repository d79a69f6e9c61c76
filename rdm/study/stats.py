"""The statistics of a study, with the prompt as the unit: seeds of one prompt share it, so they are averaged
within the prompt first and every interval and test is over prompts.

- a mean with a t 95% interval over per-prompt values (a percentile bootstrap is too narrow at small n);
- two modes compared on per-prompt differences, rounded before ranking (float32 noise must not break ties):
  a two-sided Wilcoxon signed-rank test (an exact sign test beside it), its direction read off the test's own
  statistic (the rank sums, or wins and losses), never off the mean;
- Holm's correction across the study's family of tests; a pre-registered primary comparison is judged alone
  at the full level and the rest are exploratory;
- a NaN score is left out here, in ``finite``, and counted.

scipy does the tests and intervals, statsmodels the correction; this module decides what is compared with
what and words the verdict, on the same rounded p-value it shows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from itertools import count
from typing import Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

from rdm.errors import BadRequestError

ALPHA = 0.05
CORRECTION = "holm"
DIGITS = 4  # significant digits of every figure: a 1e-5-scale metric keeps its digits, not 0.0
DIFF_DIGITS = 6  # per-prompt differences keep 6 significant digits of the scores' scale (float32 has ~7)


def min_untied(alpha: float = ALPHA) -> int:
    """The fewest untied prompts at which a two-sided signed-rank or sign test can reach p < alpha
    (its smallest p is 2 / 2^n): 6 at 0.05."""
    return next(n for n in count(1) if 2 * 0.5 ** n < alpha)


MIN_PAIRS = min_untied()


def sig(x: float | None, digits: int = DIGITS) -> float | None:
    """``x`` to ``digits`` significant digits (None and 0 stay)."""
    if x is None or x == 0 or not math.isfinite(x):
        return x
    return round(float(x), digits - 1 - math.floor(math.log10(abs(x))))


def fmt(x: float | None) -> str:
    """A figure as shown everywhere: its significant digits, never 0.0 for a small one."""
    return "n/a" if x is None else f"{x:.{DIGITS}g}"


def is_score(value: float | None) -> bool:
    """The one rule for what counts: a NaN (or missing) score is left out of every statistic, and counted."""
    return value is not None and math.isfinite(value)


def finite(values: Sequence[float | None]) -> tuple[np.ndarray, int]:
    """The values that count, and how many were left out."""
    kept = [float(v) for v in values if is_score(v)]
    return np.asarray(kept, np.float64), len(values) - len(kept)


@dataclass(frozen=True)
class Estimate:
    """A mean over units (prompts; seeds for a per-requirement figure) with a t 95% interval."""

    mean: float | None  # None: no values
    ci95: tuple[float, float] | None  # None: fewer than two units
    n: int  # units the interval is over
    unit: str = "prompt"
    images: int = 0  # images behind it
    dropped: int = 0  # NaN scores left out

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": list(self.ci95) if self.ci95 else None, "n": self.n, "unit": self.unit,
                "images": self.images, "dropped": self.dropped}


def mean_ci(values: Sequence[float], unit: str = "prompt", images: int | None = None, dropped: int = 0) -> Estimate:
    """The mean of one value per unit and its t 95% interval (exact for normal units, and close at small n
    where a percentile bootstrap covers 74% at n = 3)."""
    x, nan = finite(values)
    images = len(x) if images is None else images
    if len(x) == 0:
        return Estimate(None, None, 0, unit, images, dropped + nan)
    mean = float(x.mean())
    if len(x) < 2 or np.ptp(x) == 0:
        ci = (sig(mean), sig(mean)) if len(x) >= 2 else None
    else:
        low, high = stats.t.interval(0.95, len(x) - 1, loc=mean, scale=stats.sem(x))
        ci = (sig(low), sig(high))
    return Estimate(sig(mean), ci, len(x), unit, images, dropped + nan)


def rounded_differences(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x - y to DIFF_DIGITS significant digits of the scores' own scale: 0.0040000081 and 0.0039999932
    (two float32 scores of 4 decimals, subtracted) are one tie."""
    scale = float(max(np.abs(x).max(initial=0.0), np.abs(y).max(initial=0.0)))
    if scale == 0:
        return np.zeros_like(x)
    return np.round(x - y, DIFF_DIGITS - math.ceil(math.log10(scale)))


@dataclass(frozen=True)
class Paired:
    """Mode ``a`` against mode ``b`` on one metric, over the prompts both have (each prompt's seeds averaged)."""

    a: str
    b: str
    scorer: str  # the metric
    n: int  # prompts compared
    wins: int  # prompts where a scored higher
    losses: int
    ties: int
    win_rate: float | None  # (wins + ties / 2) / n
    mean_difference: float | None  # a - b, the mean over prompts
    p_value: float | None  # Wilcoxon signed-rank, two-sided (the sign test below the prompts it needs)
    sign_p: float | None  # exact sign test over the untied prompts
    verdict: str
    unit: str = "prompt"
    images: int = 0  # image pairs behind it (prompt, seed)
    dropped: int = 0  # NaN scores left out
    untied: int = 0
    difference_ci95: tuple[float, float] | None = None  # t interval of the mean difference over prompts
    test: str = "wilcoxon"  # wilcoxon | sign
    rank_sums: tuple[float, float] | None = None  # (a higher, b higher): the Wilcoxon statistic's two sides
    higher: str | None = None  # the mode the test's own statistic favours; None: neither
    p_adjusted: float | None = None  # Holm across the family; the primary's own p
    role: str = "only"  # only | family | primary | exploratory
    family: int = 1  # tests p_adjusted is corrected over
    alpha: float = ALPHA
    significant: bool = False  # p_adjusted < alpha, on the rounded value that is shown

    def to_dict(self) -> dict:
        return asdict(self)


def compare_paired(a: str, b: str, scorer: str, a_values: Sequence[float], b_values: Sequence[float], *,
                   images: int | None = None, dropped: int = 0, alpha: float = ALPHA) -> Paired:
    """``a_values[i]`` and ``b_values[i]`` are one unit's (prompt's) values; a unit with a NaN is left out."""
    x, y = np.asarray(a_values, np.float64), np.asarray(b_values, np.float64)
    if x.shape != y.shape:
        raise ValueError("paired values must come in pairs: one of a and one of b per prompt")
    keep = np.asarray([is_score(u) and is_score(v) for u, v in zip(x, y)], bool)
    dropped += int((~keep).sum())
    x, y = x[keep], y[keep]
    images = len(x) if images is None else images
    d = rounded_differences(x, y)
    n = len(d)
    if n == 0:
        return Paired(a, b, scorer, 0, 0, 0, 0, None, None, None, None, "no pairs: nothing to compare",
                      images=images, dropped=dropped, alpha=alpha)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    untied = wins + losses
    sign_p = float(stats.binomtest(wins, untied, 0.5).pvalue) if untied else 1.0
    nonzero = d[d != 0]
    ranks = stats.rankdata(np.abs(nonzero))
    rank_sums = (float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum()))
    if untied >= min_untied(alpha):
        test, p, for_a, for_b = "wilcoxon", float(stats.wilcoxon(nonzero).pvalue), *rank_sums
    else:  # the signed-rank test cannot reach the level here; the sign test says as much, exactly
        test, p, for_a, for_b = "sign", sign_p, wins, losses
    higher = a if for_a > for_b else b if for_b > for_a else None
    pair = Paired(a, b, scorer, n, wins, losses, n - untied, sig((wins + (n - untied) / 2) / n),
                  sig(float(d.mean())), sig(p), sig(sign_p), "", images=images, dropped=dropped, untied=untied,
                  difference_ci95=mean_ci(d).ci95, test=test, rank_sums=rank_sums, higher=higher, alpha=alpha)
    return judged(pair, sig(p), "only", 1)


def judged(pair: Paired, p_adjusted: float | None, role: str, family: int) -> Paired:
    """The pair with its adjusted p, its role in the family, and the verdict on that p (as shown)."""
    significant = (p_adjusted is not None and p_adjusted < pair.alpha and pair.higher is not None
                   and pair.untied >= min_untied(pair.alpha))
    pair = replace(pair, p_adjusted=p_adjusted, role=role, family=family, significant=significant)
    return replace(pair, verdict=_verdict(pair))


def _verdict(p: Paired) -> str:
    label = {"primary": "primary: ", "exploratory": "exploratory: "}.get(p.role, "")
    if p.n == 0:
        return "no pairs: nothing to compare"
    need = min_untied(p.alpha)
    if p.untied < need:
        return (f"{label}too few prompts to tell: {p.untied} of {p.n} differ (ties do not count); the test needs "
                f"at least {need} before it can reach p < {p.alpha}")
    level = {"primary": f"p = {fmt(p.p_adjusted)}, judged alone at {p.alpha}",
             "only": f"p = {fmt(p.p_adjusted)}"}.get(p.role, f"p_adjusted = {fmt(p.p_adjusted)}, Holm over "
                                                          f"{p.family} tests")
    if not p.significant:
        return f"{label}no difference this study can detect ({level}; {p.n} prompts)"
    lower = p.b if p.higher == p.a else p.a  # significant: enough untied prompts for the signed-rank test
    return (f"{label}{p.higher} scores higher than {lower} (rank sums {fmt(max(p.rank_sums))} vs "
            f"{fmt(min(p.rank_sums))}; {level}; {p.n} prompts)")


@dataclass(frozen=True)
class Primary:
    """The comparison a study names up front: judged at the full level, the rest exploratory."""

    a: str
    b: str
    metric: str

    def __str__(self) -> str:
        return f"{self.a}:{self.b}:{self.metric}"

    def matches(self, pair: Paired) -> bool:
        return {pair.a, pair.b} == {self.a, self.b} and pair.scorer == self.metric


def parse_primary(text: str, option: str = "--primary") -> Primary:
    """``MODE_A:MODE_B:METRIC`` (the metric may hold a colon itself: ``vqa:tiny``)."""
    parts = text.split(":", 2)
    if len(parts) != 3 or not all(p.strip() for p in parts) or parts[0] == parts[1]:
        raise BadRequestError(f"{option} {text!r} is not MODE_A:MODE_B:METRIC with two different modes, e.g. "
                              "subquery+filter:none:vqa")
    return Primary(*(p.strip() for p in parts))


def resolve_metric(name: str, metrics: Sequence[str]) -> str | None:
    """The study's metric that ``name`` means: itself, or a scorer's kind for its one model
    (``vqa`` for ``vqa:Salesforce/blip-vqa-base``, ``vqa/requirements`` for its requirements mean)."""
    if name in metrics:
        return name
    kind, _, suffix = name.partition("/")
    found = [m for m in metrics if ":" not in name and m.split(":", 1)[0] == kind
             and m.partition("/")[2] == suffix and ":" in m]
    return found[0] if len(found) == 1 else None


def adjust(pairs: Sequence[Paired], primary: Primary | None = None) -> list[Paired]:
    """Holm across the family (every pair with a p-value); a matching primary is judged alone at its level."""
    is_primary = [primary is not None and primary.matches(p) for p in pairs]
    family = [i for i, p in enumerate(pairs) if p.p_value is not None and not is_primary[i]]
    adjusted = {family[0]: pairs[family[0]].p_value} if len(family) == 1 else \
        dict(zip(family, multipletests([pairs[i].p_value for i in family], method=CORRECTION)[1])) if family else {}
    # (one test needs no correction, and statsmodels' Holm runs a gc.collect() per call: slow in simulations)
    role = "exploratory" if any(is_primary) else "family" if len(family) > 1 else "only"
    return [judged(p, p.p_value, "primary", 1) if is_primary[i]
            else judged(p, sig(float(adjusted[i])) if i in adjusted else None, role, len(family))
            for i, p in enumerate(pairs)]
