"""How many prompts a study needs: a pilot study's spread of a paired difference, split into how much the mode
effect varies between prompts and how much between seeds of one prompt, then studies simulated from it and
analysed by ``summarise`` itself (the comparison judged as a primary, at the full level), so the power is that
of the test the study will run, not of a textbook formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
import numpy as np
from scipy import stats

from rdm.errors import BadRequestError
from rdm.study.stats import ALPHA, Primary, min_untied, resolve_metric, sig
from rdm.study.summary import ScoredImage, Scores, metrics_of, summarise

SIMULATIONS = 200  # per power estimate: its Monte Carlo standard error is at most 0.035
POWER = 0.8
MAX_PROMPTS = 2000
SOLID_PILOT = 10  # prompts: below this a pilot's variance estimate is itself very uncertain
WILCOXON_ARE = 3 / math.pi  # the signed-rank test's efficiency against the t-test for normal data: a first guess


@dataclass(frozen=True)
class Variance:
    """How a paired difference ``a - b`` on ``metric`` spread in a pilot study."""

    a: str
    b: str
    metric: str
    prompt_sd: float  # the SD of the mode effect between prompts
    seed_sd: float  # the SD of one (prompt, seed) difference about its prompt's mean
    prompts: int  # the pilot's
    seeds: int

    def sd(self, seeds: int) -> float:
        """The SD of one prompt's difference when it is averaged over ``seeds``."""
        return math.sqrt(self.prompt_sd ** 2 + self.seed_sd ** 2 / seeds)

    @property
    def caveat(self) -> str:
        """How far to trust a plan built on this pilot."""
        if self.prompts >= SOLID_PILOT:
            return ""
        return (f"a pilot of {self.prompts} prompts estimates these spreads loosely (the between-prompt SD most of "
                f"all): read the counts as a floor, or run a pilot of {SOLID_PILOT}+ prompts")


def pilot_variance(study: dict, compare: Primary | None = None) -> Variance:
    """The pilot's variance components of ``compare`` (two modes and a metric), else of its pre-registered
    primary, else of the widest-spread pair of its first metric: the one-way ANOVA estimator by prompt, which for
    balanced seeds is what a REML mixed model (prompt as a random effect) gives, without a fit that fails to
    converge on a pilot of three prompts."""
    kept = [ScoredImage.from_dict(i) for i in study["images"] if i["kept"]]
    metrics, modes = metrics_of(kept), list(study["request"]["modes"])
    compare = compare or _registered(study)
    metric = resolve_metric(compare.metric, metrics) if compare else next(iter(metrics), None)
    if metric is None:
        raise BadRequestError(f"the pilot has no metric {compare.metric if compare else 'at all'}: it measured "
                              f"{', '.join(metrics) or 'nothing'}")
    pairs = [(compare.a, compare.b)] if compare else list(combinations(modes, 2))
    unknown = [m for pair in pairs for m in pair if m not in modes]
    if unknown:
        raise BadRequestError(f"the pilot has no mode {unknown[0]}: it ran {', '.join(modes)}")
    found = [v for a, b in pairs if (v := _components(kept, a, b, metric)) is not None]
    if not found:
        raise BadRequestError("the pilot needs at least 2 prompts with both modes scored to estimate how prompts "
                              "differ: run a pilot of 3-5 prompts first (`rdm study run SUITE --out PILOT`)")
    return max(found, key=lambda v: v.sd(v.seeds))  # the widest spread: a plan that holds for every pair


def _registered(study: dict) -> Primary | None:
    primary = (study.get("analysis") or {}).get("primary")
    return Primary(primary["a"], primary["b"], primary["metric"]) if primary else None


def _components(kept: list[ScoredImage], a: str, b: str, metric: str) -> Variance | None:
    left = Scores.of([i for i in kept if i.mode == a], metric).values
    right = Scores.of([i for i in kept if i.mode == b], metric).values
    groups: dict[str, list[float]] = {}
    for key in sorted(set(left) & set(right)):
        groups.setdefault(key[0], []).append(left[key] - right[key])
    if len(groups) < 2:
        return None
    within_df = sum(len(g) - 1 for g in groups.values())
    within = sum(float(np.sum((np.asarray(g) - np.mean(g)) ** 2)) for g in groups.values()) / within_df \
        if within_df else 0.0  # one seed per prompt: the seeds' share cannot be told apart from the prompts'
    seeds = round(float(np.mean([len(g) for g in groups.values()])))
    between = float(np.var([np.mean(g) for g in groups.values()], ddof=1))
    return Variance(a, b, metric, math.sqrt(max(between - within / seeds, 0.0)), math.sqrt(within), len(groups),
                    seeds)


def simulated_study(v: Variance, prompts: int, seeds: int, effect: float,
                    rng: np.random.Generator) -> list[ScoredImage]:
    """A study of two modes whose difference has the pilot's spread and a true mean of ``effect``."""
    shift = effect + v.prompt_sd * rng.standard_normal(prompts)  # mode a's advantage on each prompt
    noise = v.seed_sd / math.sqrt(2) * rng.standard_normal((prompts, seeds, 2))
    return [ScoredImage(f"p{p}", mode, s, 0, True, "", "",
                        {v.metric: 0.5 + noise[p, s, k] + (shift[p] if k == 0 else 0.0)})
            for p in range(prompts) for s in range(seeds) for k, mode in enumerate((v.a, v.b))]


def power(v: Variance, prompts: int, seeds: int, effect: float, alpha: float = ALPHA, sims: int = SIMULATIONS,
          seed: int = 0) -> float:
    """The share of simulated studies whose verdict finds ``a`` higher (fixed draws: the same inputs, the same
    answer, and a smooth curve in ``effect``)."""
    rng, primary = np.random.default_rng(seed), Primary(v.a, v.b, v.metric)
    hits = 0
    for _ in range(sims):
        (pair,) = summarise(simulated_study(v, prompts, seeds, effect, rng), (v.a, v.b), {}, primary, alpha)["pairs"]
        hits += pair["significant"] and pair["higher"] == v.a
    return hits / sims


def _first_guess(v: Variance, seeds: int, alpha: float, target: float) -> float:
    """The paired t-test's prompts-times-effect², deflated by the signed-rank test's efficiency."""
    return ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(target)) * v.sd(seeds)) ** 2 / WILCOXON_ARE


def prompts_needed(v: Variance, effect: float, seeds: int, alpha: float = ALPHA, target: float = POWER,
                   sims: int = SIMULATIONS) -> int | None:
    """The fewest prompts whose simulated power reaches ``target``; None past MAX_PROMPTS."""
    if effect <= 0:
        raise BadRequestError(f"--effect must be a positive difference in the metric's units, got {effect}")
    def enough(n: int) -> bool:
        return power(v, n, seeds, effect, alpha, sims) >= target

    low = min_untied(alpha) - 1  # below this the test cannot reach the level at all
    high = max(low + 1, math.ceil(_first_guess(v, seeds, alpha, target) / effect ** 2))
    while not enough(high):
        low, high = high, high * 2
        if high > MAX_PROMPTS:
            return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def detectable_effect(v: Variance, prompts: int, seeds: int, alpha: float = ALPHA, target: float = POWER,
                      sims: int = SIMULATIONS, tolerance: float = 0.02) -> float | None:
    """The smallest true difference found with ``target`` power by ``prompts`` x ``seeds`` (to ``tolerance``
    of itself); None below the prompts the test needs to reach the level."""
    if prompts < min_untied(alpha):
        return None
    if v.sd(seeds) == 0:
        return 0.0
    guess = math.sqrt(_first_guess(v, seeds, alpha, target) / prompts)
    low, high = 0.0, guess
    while power(v, prompts, seeds, high, alpha, sims) < target:
        low, high = high, high * 2
    while high - low > tolerance * high:
        mid = (low + high) / 2
        low, high = (low, mid) if power(v, prompts, seeds, mid, alpha, sims) >= target else (mid, high)
    return sig(high, 2)
