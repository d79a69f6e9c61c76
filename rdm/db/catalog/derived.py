"""Data derived from the image rows: the curated-text index (``rdm.db.texts``) and perceptual hashes."""

from __future__ import annotations

from typing import Collection, Sequence

from rdm.db import texts
from rdm.db.catalog.base import CatalogBase
from rdm.db.catalog.images import filter_sql


class DerivedRows(CatalogBase):
    """Text matches and perceptual hashes: derived from the rows, rebuilt when out of step."""


    def text_matches(self, text: str, *, allowed: Collection[int] | None = None,
                     limit: int = texts.MAX_MATCHES) -> dict[int, texts.TextMatch]:
        with self.read() as con:
            return texts.match(con, text, allowed=allowed, limit=limit)

    def texts_out_of_step(self) -> int:
        with self.read() as con:
            return texts.out_of_step(con)

    def rebuild_texts(self) -> None:
        with self.tx() as con:
            texts.rebuild(con)

    def text_match_matrix(self, queries: Sequence[str], ids: Sequence[int]) -> list[list[float]]:
        with self.read() as con:
            return texts.match_matrix(con, queries, ids)

    def hashes(self, ids: Sequence[int] | None = None) -> dict[int, tuple[str, int]]:
        """Live image id -> (perceptual hash, width x height), for those (of ``ids``) that have a hash."""
        sql, args = filter_sql(ids=ids)
        with self.read() as con:
            return {r[0]: (r[1], r[2]) for r in con.execute(
                "SELECT h.image_id, h.phash, i.width * i.height FROM hashes h JOIN images i ON i.id = h.image_id "
                f"WHERE {sql}", args)}

    def ids_without_hash(self) -> list[int]:
        with self.read() as con:
            return [r[0] for r in con.execute("SELECT id FROM images WHERE deleted_at IS NULL AND id NOT IN "
                                              "(SELECT image_id FROM hashes) ORDER BY id")]

    def set_hashes(self, pairs: Sequence[tuple[int, str]]) -> None:
        """Store hashes computed later (derived data: no revision bump)."""
        with self.tx() as con:
            con.executemany("INSERT OR REPLACE INTO hashes(image_id, phash) VALUES (?, ?)", pairs)
