"""The DB's SQLite file (``meta.sqlite``), split by concern behind one ``Catalog``.

``base`` (schema, connections, transactions, meta, which vector file is in use), ``images`` (image rows and
curation writes with history), ``vectors`` (which images have a vector, and the vectors), ``derived`` (the
curated-text index and perceptual hashes). The store (``rdm.db.store``) is the only writer.
"""

from rdm.db.catalog.base import SQL_CHUNK, now
from rdm.db.catalog.derived import DerivedRows
from rdm.db.catalog.images import IMAGE_COLUMNS, ImageRows
from rdm.db.catalog.vectors import VectorRows


class Catalog(ImageRows, VectorRows, DerivedRows):
    """One ``meta.sqlite``. Thread-safe: every call opens its own connection."""


__all__ = ["IMAGE_COLUMNS", "SQL_CHUNK", "Catalog", "now"]
