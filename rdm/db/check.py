"""``rdm check``: every way the DB's files, rows, vectors and index can disagree, one function each.

Each check reports what it finds and, with ``repair``, fixes it without losing an acknowledged
image: a row whose original is gone (or whose sha256 or extension names no file of the DB) cannot be served
and is removed; a vector file the DB names outside its folder is replaced by a new one; a missing thumbnail or vector
(unlisted, or its row in the vector file missing or unreadable) is rebuilt from the original; files no
row acknowledges (leftovers of a killed ingest or purge, a vector file replaced) are deleted; a stale
index is rebuilt from the catalog's vectors, and a stale text index from the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from rdm.db.blobs import Blobs
from rdm.db.catalog import Catalog
from rdm.db.index import IndexBackend, VectorIndex, index_problem, lag
from rdm.db.records import CheckReport, ImageRecord
from rdm.errors import StoreError


class Checked(Protocol):
    """What the checks read and repair: the store passes itself (``ImageStore.check``), so this module needs
    no import of the store (which imports it)."""

    path: Path
    catalog: Catalog
    blobs: Blobs
    encoder: Any  # an ``rdm.encoders.Encoder``

    def records(self, *, include_deleted: bool = False) -> list[ImageRecord]: ...

    def open_image(self, image_id: int) -> Image.Image: ...

    def meta(self, key: str) -> str: ...

    def read_index_file(self) -> VectorIndex | None: ...

    def index_backend(self) -> IndexBackend: ...

    def save_index(self) -> None: ...

    def rebuild_index(self, kind: str | None = None, backend: str | None = None) -> Any: ...


@dataclass
class _Findings:
    repair: bool
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)


def run_checks(store: Checked, repair: bool) -> CheckReport:
    found = _Findings(repair)
    _sqlite_integrity(store, found)
    lost = _originals(store, found)
    _thumbnails(store, found, lost)
    if _vector_file(store, found):
        _vectors(store, found, lost)
        _spare_vector_files(store, found)
    _unacknowledged_files(store, found, lost)
    _index(store, found)
    _texts(store, found)
    return CheckReport(tuple(found.problems), tuple(found.repaired))


def _sqlite_integrity(store: Checked, found: _Findings) -> None:
    integrity = store.catalog.integrity()
    if integrity != "ok":
        found.problems.append(f"SQLite integrity check failed: {integrity}")


def _originals(store: Checked, found: _Findings) -> set[int]:
    """Rows whose original file is gone; repair removes them. Returns their ids."""
    lost = set()
    for rec in store.records(include_deleted=True):
        try:
            why = "" if store.blobs.image_file(rec.sha256, rec.ext).exists() else "original file missing"
        except StoreError:
            why = f"its row names no file of the DB (sha256 {rec.sha256[:80]!r}, extension {rec.ext[:20]!r})"
        if why:
            lost.add(rec.id)
            found.problems.append(f"image {rec.id} ({rec.filename}): {why}")
            if found.repair:
                store.catalog.remove([rec.id], who="rdm check --repair")
                found.repaired.append(f"removed image {rec.id} ({rec.filename}): its file is gone")
    return lost


def _thumbnails(store: Checked, found: _Findings, lost: set[int]) -> None:
    for rec in store.records(include_deleted=True):
        if rec.id not in lost and not store.blobs.thumb_file(rec.sha256).exists():
            found.problems.append(f"image {rec.id}: thumbnail missing")
            if found.repair:
                store.blobs.write_thumbnail(rec.sha256, store.open_image(rec.id))
                found.repaired.append(f"rebuilt the thumbnail of image {rec.id}")


def _vector_file(store: Checked, found: _Findings) -> bool:
    """Whether the vector file the DB names can be used; repair starts a new one (``_vectors`` then re-embeds
    every image) when the name points anywhere but a vector file in the DB folder."""
    problem = store.catalog.vector_file_problem()
    if problem:
        found.problems.append(problem)
        if not found.repair:
            return False
        store.catalog.restart_vector_file()
        found.repaired.append("started a new vector file in the DB folder")
    return True


def _vectors(store: Checked, found: _Findings, lost: set[int]) -> None:
    """Each listed vector is in the file, finite and unit length (a scaled row would top every search)."""
    vectors = store.catalog.vector_file()
    missing = [i for i in store.catalog.ids_without_vector() if i not in lost]
    if missing and not vectors.path.exists():
        found.problems.append(f"the vector file {vectors.path.name} is missing: {len(missing)} image(s) have no vector")
    for image_id in missing:
        found.problems.append(f"image {image_id}: no vector (none listed, or its row is missing, not finite or "
                              "not unit length)")
        if found.repair:
            store.catalog.add_vector(image_id, store.encoder.encode_images([store.open_image(image_id)])[0])
            found.repaired.append(f"re-embedded image {image_id}")
    if missing and found.repair:  # the index may hold copies of the damaged rows: built again from the repaired ones
        store.rebuild_index()


def _unacknowledged_files(store: Checked, found: _Findings, lost: set[int]) -> None:
    """Files no row acknowledges: leftovers of an interrupted ingest or purge."""
    known = set()
    for rec in store.records(include_deleted=True):
        if rec.id not in lost:
            known |= {store.blobs.image_file(rec.sha256, rec.ext), store.blobs.thumb_file(rec.sha256)}
    for f in store.blobs.files():
        if f not in known:
            kind = "temporary file" if f.name.endswith(".tmp") else "file with no DB row"
            found.problems.append(f"{kind}: {f.relative_to(store.path)}")
            if found.repair:
                f.unlink()
                found.repaired.append(f"removed {f.relative_to(store.path)}")
    for f in store.path.glob(".*.tmp"):
        if f.name.startswith(".vectors"):  # the spare vector files' own: under the write lock, above
            continue
        found.problems.append(f"temporary file: {f.name}")
        if found.repair:
            f.unlink()
            found.repaired.append(f"removed {f.name}")


def _spare_vector_files(store: Checked, found: _Findings) -> None:
    for name in store.catalog.spare_vector_files(remove=found.repair):  # of a re-embed killed before its commit
        found.problems.append(f"vector file the DB no longer uses: {name}")
        if found.repair:
            found.repaired.append(f"removed {name}")


def _index(store: Checked, found: _Findings) -> None:
    live, dim = store.catalog.live_ids(), int(store.meta("dim"))
    try:
        saved = store.read_index_file()
    except StoreError as exc:  # an engine that cannot be opened (a Milvus Lite path outside the DB folder)
        found.problems.append(str(exc))
        return
    problem = index_problem(saved, live, dim)
    if problem and store.index_backend.lazy and lag(saved, live, dim) is not None:
        # a large index file is saved lazily: behind, not wrong
        problem = ""
        if found.repair:
            store.save_index()
            found.repaired.append("saved the index file, which was behind the DB (it is saved every 1% of changes)")
    if problem:
        found.problems.append(problem)
        if found.repair:
            store.rebuild_index()
            found.repaired.append(f"rebuilt the vector index ({store.index_backend.where()}) from the DB's vectors")


def _texts(store: Checked, found: _Findings) -> None:
    stale = store.catalog.texts_out_of_step()
    if stale:
        found.problems.append(f"the text index disagrees with {stale} row(s): text search would miss or misrank them")
        if found.repair:
            store.catalog.rebuild_texts()
            found.repaired.append("rebuilt the text index from the DB's captions, tags and categories")
