"""Retrieval modes, the seed's presets, and the settings of retrieval: plain data, light to import.

The CLI's options and the dashboard's widgets read their defaults from ``FilterSettings`` and
``RetrievalSettings``; ``rdm.retrieve.references`` does the retrieving. ``Fusion`` lives with search
(``rdm.db.fusion``), which scores hits by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdm.db.fusion import Fusion
from rdm.errors import RetrievalError

MODES = ("none", "full", "subquery", "subquery+filter")
PRESETS = ("exp1", "exp2", "exp3", "exp4")
EVAL_MODES = ("full", "subquery", "subquery+filter")  # the modes that retrieve
EVAL_BUDGET = 5  # evaluation scores every mode with the same number of references

# Absolute cosine thresholds do not transfer between encoders, so each gets its own default.
# conse (ImageNet classes -> MiniLM): matches score ~0.3-0.75, unrelated photos ~0.2-0.3.
# open_clip (ViT-B-32 text->image): matches ~0.25-0.35, unrelated ~0.1-0.2.
# tiny has random weights: its cosines mean nothing, so only the relative threshold applies.
ENCODER_THRESHOLDS = {"conse": 0.30, "open_clip": 0.20, "tiny": -1.0}
FALLBACK_THRESHOLD = 0.20  # an unknown encoder is most likely a CLIP variant
TEXT_THRESHOLD = 0.0  # text-only scores are text matches in (0, 1]: any match passes by default


BELOW_ABSOLUTE = "below absolute threshold"
BELOW_RELATIVE = "below relative threshold"
OVER_BUDGET = "over budget"
ALREADY_COVERED = "already covered"  # coverage-aware selection only
SAME_IMAGE = "same image as kept for"  # + the sub-query it was kept for: one photo answering two
COPY_OF = "copy of"  # + the kept image's id: the same photo resized or re-encoded (perceptual hash)
NEAR_DUPLICATE = "near-duplicate of"  # + the kept image's id: embeddings closer than the bound


@dataclass(frozen=True)
class FilterSettings:
    threshold: float | None = None  # absolute cosine; None: the DB encoder's default
    relative: float = 0.8  # keep hits scoring at least this fraction of their sub-query's best
    dedupe: float = 1.0  # references more alike than this (cosine) are near-duplicates; 1: off (copies are
    # caught by their perceptual hashes; embeddings put different photos of one kind this close)
    drop_uncovered: bool = True  # drop sub-queries without a reference from the text items
    coverage_select: bool = False  # one small covering set instead of top-k per sub-query

    def absolute_for(self, encoder_name: str, fusion: Fusion = Fusion()) -> float:
        """The absolute threshold in force for a DB built with ``encoder_name``, on ``fusion``'s score
        (hybrid scores start at the cosine, so the encoder's default holds; text-only scores do not)."""
        if self.threshold is not None:
            return float(self.threshold)
        if fusion.kind == "text":
            return TEXT_THRESHOLD
        return ENCODER_THRESHOLDS.get(encoder_name.split(":", 1)[0], FALLBACK_THRESHOLD)

    def __post_init__(self) -> None:
        if not 0.0 <= self.relative <= 1.0:
            raise RetrievalError(f"relative threshold {self.relative} must be between 0 and 1 "
                                 "(a fraction of each sub-query's best score)")
        if not 0.0 < self.dedupe <= 1.0:
            raise RetrievalError(f"near-duplicate bound {self.dedupe} must be in (0, 1]; "
                                 "1 keeps everything but exact duplicates")


@dataclass(frozen=True)
class RetrievalSettings:
    """How references are found for every mode of a run: the one place their defaults live."""

    k: int = 5  # hits retrieved per (sub-)query
    budget: int | None = None  # at most this many references in the final set; None: no cap
    decomposer: str = "offline"  # llm | offline | keybert (exp1 always uses keybert)
    filters: FilterSettings = FilterSettings()
    fusion: Fusion = Fusion()  # image | text | hybrid scores

    def __post_init__(self) -> None:
        if self.k < 1:
            raise RetrievalError(f"k must be at least 1, got {self.k}")
        if self.budget is not None and self.budget < 1:
            raise RetrievalError(f"the reference budget must be at least 1, got {self.budget}")


@dataclass(frozen=True)
class Recipe:
    """What a mode retrieves and which items its plan holds."""
    retrieval: str  # none | full | subquery | subquery+filter
    texts: tuple[str, ...]  # prompt | summary | subqueries | keywords
    references: bool  # retrieved photos go into the plan
    input_weights: tuple[float, ...]  # fixed weights of the advertiser's photos, in order
    decomposer: str | None = None  # forces a backend (exp1: keybert); None: the caller's
    note: str = ""


RECIPES: dict[str, Recipe] = {
    "none": Recipe("none", ("prompt",), False, (0.4,)),
    "full": Recipe("full", ("prompt",), True, (0.4,)),
    "subquery": Recipe("subquery", ("summary", "subqueries"), True, (0.4,)),
    "subquery+filter": Recipe("subquery+filter", ("summary", "subqueries"), True, (0.4,)),
    "exp1": Recipe("full", ("keywords",), False, (0.2, 0.3), decomposer="keybert",
                   note="exp1 (seed baseline): full-prompt retrieval; KeyBERT keywords weighted "
                        "by their scores + input images 0.2/0.3"),
    "exp2": Recipe("subquery", ("summary",), False, (0.2, 0.3),
                   note="exp2: sub-query retrieval; summarised query + input images 0.2/0.3"),
    "exp3": Recipe("subquery", ("summary", "subqueries"), True, (0.4,),
                   note="exp3: summarised query + references per sub-query + sub-queries + "
                        "input image 0.4, weighted by similarity"),
    "exp4": Recipe("subquery+filter", ("summary", "subqueries"), True, (0.4,),
                   note="exp4: like exp3 after the cosine filter; uncovered sub-queries dropped"),
}

