"""Reading a DB folder: records, statistics, files, vectors and history; no writes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from rdm.db.blobs import Blobs
from rdm.db.catalog import Catalog
from rdm.db.history import Change
from rdm.db.records import ImageRecord, Stats

DB_FILE = "meta.sqlite"


class StoreReader:
    """The read side of ``ImageStore``: everything here only looks."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.db_file = self.path / DB_FILE
        self.catalog = Catalog(self.db_file)
        self.blobs = Blobs(self.path)

    def meta(self, key: str) -> str:
        return self.catalog.meta(key)

    @property
    def index_version(self) -> int:
        return int(self.meta("index_version"))

    @property
    def revision(self) -> int:  # bumped by every write, edits too: keys caches of derived data
        return int(self.meta("revision"))

    def get(self, image_id: int) -> ImageRecord:
        return self.catalog.get(image_id)

    def records(self, **filters) -> list[ImageRecord]:
        """Records by ``include_deleted``, ``only_deleted``, ``category``, ``tag``, ``text``, ``ids``."""
        return self.catalog.records(**filters)

    def categories(self) -> list[str]:
        return self.catalog.categories()

    def tags(self) -> list[str]:  # of live images
        return self.catalog.tags()

    def stats(self) -> Stats:
        return self.catalog.stats(self.path)

    def image_path(self, image_id: int) -> Path:
        return self.blobs.image_file((rec := self.get(image_id)).sha256, rec.ext)

    def thumbnail_file(self, record: ImageRecord) -> Path:
        """The thumbnail of a record already in hand (no DB read: grids show dozens per rerun)."""
        return self.blobs.thumb_file(record.sha256)

    def open_image(self, image_id: int) -> Image.Image:
        return self.blobs.open(self.image_path(image_id), f"image {image_id}")

    def vectors(self, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of live images, or of the given ids; rows are L2-normalised."""
        return self.catalog.vectors(ids)

    def history(self, image_id: int | None = None, limit: int = 500, *, batch: str | None = None) -> list[Change]:
        """Curation changes, newest first (of one image, or of one bulk action, if given)."""
        return self.catalog.history(image_id, limit, batch=batch)
