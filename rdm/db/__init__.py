"""The reference-image DB: ``ImageStore`` (the facade) over a catalog (SQLite), a vector index
(FAISS), blobs (originals and thumbnails), the ingest pipeline and the consistency checks."""

from rdm.db.blobs import THUMB_SIZE, make_thumbnail
from rdm.db.records import CheckReport, Hit, ImageRecord, IngestReport, ProgressFn, Stats
from rdm.db.store import ImageStore
from rdm.errors import EncoderMismatch, StoreError

__all__ = ["CheckReport", "EncoderMismatch", "Hit", "ImageRecord", "ImageStore", "IngestReport", "ProgressFn",
           "Stats", "StoreError", "THUMB_SIZE", "make_thumbnail"]
