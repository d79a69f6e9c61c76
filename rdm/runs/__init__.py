"""Run records: every generation is saved as a folder that can be compared, exported and handed on.

A run folder (``<runs_dir>/<id>/``) holds ``run.json`` (prompt, decomposition, hits, plan,
settings, model ids, DB/index version, encoder, timings, scores), the images as PNG under
``images/`` and thumbnails of the conditioning pictures under ``refs/`` so the HTML export needs
no DB. Each PNG carries an AUTOMATIC1111-style ``parameters`` text chunk and an ``rdm`` JSON chunk
with the provenance. A comparison run holds several modes generated with the same seed. Scores are
cosines (the scorer's encoder) of each image against the full prompt and against each requirement
(sub-query): one check per requirement rather than one global number. A run with a product lock
records the product (source, size, pixel fingerprint) and its placement.

Modules: ``pipeline`` (``RunRequest`` and ``run_request``: one run in numbered steps, and ``generate_run``),
``record`` (the dataclasses and run.json's format), ``save`` (score and save a run folder),
``png`` (provenance chunks), ``load`` (find, open and zip runs), ``compare`` (runs side by side), ``report`` (the HTML
page). The top stage of the library: it may import every stage below (db, decompose, retrieve, generate).
"""

from rdm.errors import RunError
from rdm.runs.load import list_runs, load_run, zip_run
from rdm.runs.png import a1111_parameters, provenance, read_png_provenance
from rdm.runs.record import (RUN_FILE, RUN_FORMAT, DbProvenance, HitRecord, ImageResult, ModeOutput, ModeResult,
                             ProductRecord, RetrievalRecord, RunRecord, requirements_of)
from rdm.runs.report import export_html
from rdm.runs.pipeline import RunRequest, generate_run, run_request
from rdm.runs.save import PRODUCT_KEY, Scorer, save_run, score_images

__all__ = ["PRODUCT_KEY", "RUN_FILE", "RUN_FORMAT", "DbProvenance", "HitRecord", "ImageResult", "ModeOutput",
           "ModeResult", "ProductRecord", "RetrievalRecord", "RunError", "RunRecord", "RunRequest", "Scorer", "a1111_parameters",
           "export_html", "generate_run", "list_runs", "load_run", "provenance", "read_png_provenance",
           "requirements_of", "run_request", "save_run", "score_images", "zip_run"]
