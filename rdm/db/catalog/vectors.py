"""Which images have a vector, and the vectors themselves (``rdm.db.vectorfile``): written inside the
transaction that lists them, read from one commit, replaced whole by a re-embed."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rdm.db.catalog.base import SQL_CHUNK, CatalogBase
from rdm.db.vectorfile import VectorFile, usable
from rdm.errors import StoreError


class VectorRows(CatalogBase):
    """The vector side of the catalog."""

    def add_vector(self, image_id: int, vec: np.ndarray) -> None:
        """Image ``image_id``'s vector, written anew (`rdm check --repair`: it was missing or unreadable)."""
        with self.tx() as con:
            self.vector_file(con).write([int(image_id)], np.asarray(vec, np.float32)[None])
            con.execute("INSERT OR IGNORE INTO vectors(image_id) VALUES (?)", (int(image_id),))
            self.bump(con, vectors_changed=True)

    def switch_encoder(self, ids: Sequence[int], vectors: np.ndarray, name: str, dim: int, reason: str) -> None:
        """Replace every vector and the encoder they came from: a new vector file, then one transaction that
        points the DB at it (a crash before the commit leaves the old file in use, and a spare one that
        `rdm check --repair` removes)."""
        with self.tx() as con:
            old = self.vector_file(con)
            made = self._new_vector_file(con, dim, ids, vectors)
            try:
                con.execute("DELETE FROM vectors")
                con.executemany("INSERT INTO vectors(image_id) VALUES (?)", [(int(i),) for i in ids])
                con.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [
                    ("encoder", name), ("dim", str(dim)), ("encoder_reason", reason)])
                self.bump(con, vectors_changed=True)
            except BaseException:
                made.path.unlink(missing_ok=True)
                raise
        old.path.unlink(missing_ok=True)

    def vector_file_problem(self) -> str:
        """Why the vector file the DB names cannot be used ('' if it can)."""
        try:
            self.vector_file()
        except StoreError as exc:
            return str(exc)
        return ""

    def restart_vector_file(self) -> None:
        """A new, empty vector file in use (`rdm check --repair`, when the one the DB names cannot be trusted):
        every image then lacks a vector, and the repair re-embeds each from its original."""
        with self.tx() as con:
            dim = int(con.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()[0])
            self._new_vector_file(con, dim, [], np.zeros((0, dim), np.float32))
            self.bump(con, vectors_changed=True)

    def _new_vector_file(self, con, dim: int, ids: Sequence[int], vectors: np.ndarray) -> VectorFile:
        """A vector file of these rows, named after the version this transaction makes, and named in meta."""
        version = int(con.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone()[0])
        made = VectorFile.write_new(self.db_file.parent / f"vectors-{version + 1}.f32", dim, ids, vectors)
        con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('vectors_file', ?)", (made.path.name,))
        return made


    def vectors(self, ids: Sequence[int] | None = None, *,
                missing_ok: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of live images, or of the given ids in that order (``missing_ok``: those
        without a usable vector left out, as search does until `rdm check --repair` embeds them: none
        listed, or a row the file lacks, zeroed or not finite)."""
        with self.read() as con:
            con.execute("BEGIN")  # the ids and the file they are in, from one commit (a re-embed moves them)
            try:
                if ids is None:
                    listed = self.live_ids()
                else:
                    have = set()
                    for start in range(0, len(ids), SQL_CHUNK):  # SQLite takes at most 32,766 parameters
                        part = [int(i) for i in ids[start:start + SQL_CHUNK]]
                        have.update(r[0] for r in con.execute(
                            f"SELECT image_id FROM vectors WHERE image_id IN ({','.join('?' * len(part))})", part))
                    listed = np.array([int(i) for i in ids if int(i) in have], np.int64)
                vectors = self.vector_file(con).read(listed)
            finally:
                con.execute("COMMIT")
        good = usable(vectors)
        if ids is not None and not missing_ok and (len(listed) < len(ids) or not good.all()):
            missing = sorted({int(i) for i in ids} - set(listed[good].tolist()))
            raise StoreError(f"image(s) {', '.join(map(str, missing))} have no vector in the DB at "
                             f"{self.db_file.parent}: run `rdm check --repair`")
        return (listed, vectors) if good.all() else (listed[good], vectors[good])

    def spare_vector_files(self, remove: bool = False) -> list[str]:
        """Vector files beside the one in use (a re-embed killed before its commit, or one being written aside),
        and with ``remove`` deleted: only under the folder's write lock (``rdm check --repair`` holds it), which
        a re-embed holds while it writes its new file."""
        with self.read() as con:
            in_use = self.vector_file(con).path
            spare = sorted(p for p in in_use.parent.glob("vectors*.f32") if p != in_use)
            spare += sorted(in_use.parent.glob(".vectors*.f32.*.tmp"))
            if remove:
                for path in spare:
                    path.unlink(missing_ok=True)
        return [p.name for p in spare]

    def ids_without_vector(self) -> list[int]:
        """Images with no usable vector: none listed, or a row missing from the file, zero or not finite."""
        with self.read() as con:
            unlisted = [r[0] for r in con.execute(
                "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM vectors)")]
            listed = np.fromiter((r[0] for r in con.execute("SELECT image_id FROM vectors ORDER BY image_id")),
                                 np.int64)
            return sorted(unlisted + self.vector_file(con).unusable(listed))
