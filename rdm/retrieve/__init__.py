"""Retrieval: from a prompt to each mode's reference photos and conditioning plan.

``plan_for`` reads in steps: decompose (``rdm.decompose``), retrieve top-k per sub-query (``references``),
filter (``filter``), weight the plan (``planning``). ``modes`` holds the modes, the seed's presets and the
retrieval settings as plain data; ``evaluate`` and ``baseline`` measure retrieval on labelled query sets.
May import ``rdm.db``, ``rdm.decompose``, ``rdm.encoders``, ``rdm.common`` and the shared modules.
"""

from rdm.db.fusion import RETRIEVAL_KINDS, Fusion
from rdm.retrieve.filter import filter_hits
from rdm.retrieve.modes import (ALREADY_COVERED, BELOW_ABSOLUTE, BELOW_RELATIVE, COPY_OF, EVAL_BUDGET, EVAL_MODES, MODES,
                                NEAR_DUPLICATE, OVER_BUDGET, PRESETS, RECIPES, SAME_IMAGE, FilterSettings, Recipe,
                                RetrievalSettings)
from rdm.retrieve.planning import build_plan, input_plan_items
from rdm.retrieve.references import Retrieval, plan_for

__all__ = ["ALREADY_COVERED", "BELOW_ABSOLUTE", "BELOW_RELATIVE", "COPY_OF", "EVAL_BUDGET", "EVAL_MODES", "MODES",
           "NEAR_DUPLICATE", "OVER_BUDGET", "PRESETS", "RECIPES", "RETRIEVAL_KINDS", "SAME_IMAGE", "FilterSettings",
           "Fusion", "Recipe", "Retrieval", "RetrievalSettings", "build_plan", "filter_hits", "input_plan_items",
           "plan_for"]
