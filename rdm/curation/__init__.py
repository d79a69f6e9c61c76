"""Aids for curating the DB: look-alike groups and category outliers (``review``), the 2-D embedding map
(``embedmap``) and its layouts saved per index version (``map_layouts``). Copies by perceptual hash live with
the DB (``rdm.db.copies``), which hashes at ingest. May import ``rdm.db`` and ``rdm.common``.
"""

from rdm.curation.embedmap import MapLayout, fit_umap, place_queries, warm_up
from rdm.curation.map_layouts import fit_due, layout_file, map_layout, saved_layout
from rdm.curation.review import (DuplicateGroup, LookAlikes, Outlier, category_outliers, look_alikes,
                                 near_duplicate_groups)

__all__ = ["DuplicateGroup", "LookAlikes", "MapLayout", "Outlier", "category_outliers", "fit_due", "fit_umap",
           "layout_file", "look_alikes", "map_layout", "near_duplicate_groups", "place_queries", "saved_layout",
           "warm_up"]
