"""The reference-image DB: a folder of content-addressed originals, thumbnails, SQLite metadata
and a FAISS inner-product index whose ids are the SQLite ids.

Layout of a DB folder::

    meta.sqlite           images, their vectors, and key/value meta (encoder, versions)
    index.faiss           live vectors only; derived from SQLite, so it can always be rebuilt
    images/ab/<sha256>.jpg  original bytes as uploaded
    thumbs/ab/<sha256>.jpg  256-px JPEG thumbnails

Durability: files are written (temp + fsync + rename) before the SQLite transaction that
acknowledges them, and the FAISS file is rewritten the same way after it. A process killed at any
point leaves orphan files or a stale FAISS file at worst; `check` finds both and `repair` fixes
them without losing an acknowledged (committed) image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import faiss
import numpy as np
from PIL import Image

from rdm.encoders import Encoder, load_encoder
from rdm.files import atomic_write, fsync_dir, jpeg_thumbnail
from rdm.sources import BadImage, Candidate, IngestItem, bytes_sources, decode_image, iter_sources

THUMB_SIZE = 256

ProgressFn = Callable[[int, int], None]
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: runs and FAISS refer to ids
    sha256 TEXT NOT NULL UNIQUE,
    filename TEXT NOT NULL,
    ext TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    caption TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    licence TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE TABLE IF NOT EXISTS vectors (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    vec BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreError(RuntimeError):
    """A DB operation failed; the message names the input and what to do."""


class EncoderMismatch(StoreError):
    pass


@dataclass(frozen=True)
class ImageRecord:
    id: int
    sha256: str
    filename: str
    ext: str
    category: str
    tags: tuple[str, ...]
    caption: str
    source: str
    licence: str
    author: str
    width: int
    height: int
    added_at: str
    deleted_at: str | None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    record: ImageRecord
    subquery: str | None = None  # the sub-query this hit answers (retrieval stage)

    def to_dict(self) -> dict:
        d = {"id": self.id, "score": round(float(self.score), 6), "filename": self.record.filename,
             "category": self.record.category, "tags": list(self.record.tags),
             "caption": self.record.caption}
        if self.subquery is not None:
            d["subquery"] = self.subquery
        return d


@dataclass(frozen=True)
class IngestReport:
    items: tuple[IngestItem, ...]

    def _with(self, status: str) -> tuple[IngestItem, ...]:
        return tuple(i for i in self.items if i.status == status)

    @property
    def added(self) -> tuple[IngestItem, ...]:
        return self._with("added")

    @property
    def duplicates(self) -> tuple[IngestItem, ...]:
        return self._with("duplicate")

    @property
    def skipped(self) -> tuple[IngestItem, ...]:
        return self._with("skipped")

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.duplicates)} duplicate(s) not stored again, "
                f"{len(self.skipped)} skipped")


@dataclass(frozen=True)
class Stats:
    path: str
    live: int
    deleted: int
    by_category: dict[str, int]
    encoder: str
    encoder_reason: str
    dim: int
    index_version: int
    revision: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CheckReport:
    problems: tuple[str, ...]
    repaired: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Prepared:
    name: str
    data: bytes
    sha: str
    image: Image.Image


def _prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
    """Run a generator on a background thread, up to ``depth`` items ahead of the consumer."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    end = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(end)
        except BaseException as exc:  # hand the error to the consumer
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="rdm-ingest-reader", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def make_thumbnail(image: Image.Image) -> bytes:
    return jpeg_thumbnail(image, THUMB_SIZE)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _ext_for(image_format: str | None) -> str:
    return {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp",
            "TIFF": "tif"}.get(image_format or "", "img")


def _parse_tags(tags: str | Sequence[str] | None) -> tuple[str, ...]:
    if tags is None:
        return ()
    items = tags.split(",") if isinstance(tags, str) else tags
    seen: dict[str, None] = {}
    for t in items:
        t = str(t).strip().lower()
        if t:
            seen.setdefault(t, None)
    return tuple(seen)


# ---------------------------------------------------------------- the store


class ImageStore:
    """One DB folder. Thread-safe: every call opens its own SQLite connection."""

    def __init__(self, path: Path, encoder: Encoder | None = None):
        self.path = Path(path)
        self.db_file = self.path / "meta.sqlite"
        self.index_file = self.path / "index.faiss"
        self._encoder = encoder
        self._lock = threading.RLock()
        self._index: faiss.Index | None = None
        self._index_version = -1
        self.index_note = ""  # set when the FAISS file had to be rebuilt on open

    # -- opening

    @classmethod
    def create(cls, path: str | Path, encoder: Encoder, encoder_reason: str = "") -> "ImageStore":
        path = Path(path)
        if (path / "meta.sqlite").exists():
            raise StoreError(f"a DB already exists at {path}; open it instead, or choose a new folder")
        path.mkdir(parents=True, exist_ok=True)
        # Build the SQLite file aside and rename it last: "meta.sqlite exists" then always means
        # a complete DB, even if this process is killed halfway through creating it.
        building = path / f".meta.sqlite.{os.getpid()}.tmp"
        con = sqlite3.connect(building, isolation_level=None)
        try:
            con.executescript(SCHEMA)
            con.execute("BEGIN")
            con.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
                ("encoder", encoder.name), ("dim", str(encoder.dim)), ("index_version", "0"),
                ("encoder_reason", encoder_reason), ("revision", "0"), ("created_at", _now())])
            con.execute("COMMIT")
        finally:
            con.close()
        atomic_write(path / "index.faiss",
                     faiss.serialize_index(faiss.IndexIDMap2(faiss.IndexFlatIP(encoder.dim))).tobytes())
        os.replace(building, path / "meta.sqlite")
        fsync_dir(path)
        return cls(path, encoder)

    @classmethod
    def open(cls, path: str | Path, encoder: Encoder | None = None) -> "ImageStore":
        """Open a DB; ``encoder`` (optional) must be the one that built it."""
        path = Path(path)
        if not (path / "meta.sqlite").exists():
            raise StoreError(f"no DB at {path}: create one with `rdm ingest PATH --db {path}` "
                             "or build the demo DB with `make demo-db`")
        store = cls(path)
        recorded = store.meta("encoder")
        if encoder is not None and encoder.name != recorded:
            raise EncoderMismatch(
                f"the DB at {path} was built with encoder {recorded!r}, not {encoder.name!r}: "
                f"vectors from different encoders cannot be compared. Query it with {recorded!r}, "
                f"or re-embed it with `rdm reindex --encoder {encoder.name} --db {path}`")
        store._encoder = encoder
        return store

    @property
    def encoder(self) -> Encoder:
        # Re-read the DB's encoder name: another process may have run `rdm reindex` meanwhile.
        name = self.meta("encoder")
        if self._encoder is None or self._encoder.name != name:
            self._encoder = load_encoder(name)
        return self._encoder

    @property
    def encoder_name(self) -> str:
        return self.meta("encoder")

    # -- SQLite

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_file, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("PRAGMA journal_mode = WAL")  # readers (dashboard) don't block the writer (CLI)
        con.execute("PRAGMA synchronous = FULL")
        return con

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    def meta(self, key: str) -> str:
        with self._read() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StoreError(f"DB at {self.path} has no {key!r} entry; run `rdm check --repair`")
        return row[0]

    @property
    def index_version(self) -> int:
        return int(self.meta("index_version"))

    @property
    def revision(self) -> int:
        """Bumped by every write, metadata edits included (for caches of derived data)."""
        return int(self.meta("revision"))

    @staticmethod
    def _bump(con: sqlite3.Connection, vectors_changed: bool) -> None:
        keys = ("revision", "index_version") if vectors_changed else ("revision",)
        for key in keys:
            con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ?", (key,))

    # -- records

    @staticmethod
    def _record(row: sqlite3.Row) -> ImageRecord:
        d = dict(row)
        d["tags"] = tuple(json.loads(d["tags"]))
        return ImageRecord(**d)

    def get(self, image_id: int) -> ImageRecord:
        with self._read() as con:
            row = con.execute("SELECT * FROM images WHERE id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise StoreError(f"no image with id {image_id} in the DB at {self.path}")
        return self._record(row)

    def records(self, *, include_deleted: bool = False, only_deleted: bool = False,
                category: str | None = None, tag: str | None = None, text: str | None = None,
                ids: Sequence[int] | None = None) -> list[ImageRecord]:
        sql, args = self._filter_sql(include_deleted=include_deleted, only_deleted=only_deleted,
                                     category=category, tag=tag, text=text, ids=ids)
        with self._read() as con:
            rows = con.execute(f"SELECT * FROM images WHERE {sql} ORDER BY id", args).fetchall()
        return [self._record(r) for r in rows]

    @staticmethod
    def _filter_sql(*, include_deleted: bool = False, only_deleted: bool = False,
                    category: str | None = None, tag: str | None = None, text: str | None = None,
                    ids: Sequence[int] | None = None) -> tuple[str, list]:
        clauses, args = ["1"], []
        if only_deleted:
            clauses.append("deleted_at IS NOT NULL")
        elif not include_deleted:
            clauses.append("deleted_at IS NULL")
        if category:
            clauses.append("category = ?")
            args.append(category)
        if tag:
            clauses.append("EXISTS (SELECT 1 FROM json_each(images.tags) WHERE value = ?)")
            args.append(tag.strip().lower())
        if text:
            clauses.append("(caption LIKE ? OR filename LIKE ? OR tags LIKE ?)")
            args += [f"%{text}%"] * 3
        if ids is not None:
            clauses.append(f"id IN ({','.join('?' * len(ids)) or 'NULL'})")
            args += [int(i) for i in ids]
        return " AND ".join(clauses), args

    def categories(self) -> list[str]:
        with self._read() as con:
            return [r[0] for r in con.execute(
                "SELECT DISTINCT category FROM images WHERE category != '' ORDER BY category")]

    def tags(self) -> list[str]:
        with self._read() as con:
            return [r[0] for r in con.execute(
                "SELECT DISTINCT j.value FROM images, json_each(images.tags) j "
                "WHERE images.deleted_at IS NULL ORDER BY j.value")]

    def stats(self) -> Stats:
        with self._read() as con:
            live = con.execute("SELECT COUNT(*) FROM images WHERE deleted_at IS NULL").fetchone()[0]
            deleted = con.execute("SELECT COUNT(*) FROM images WHERE deleted_at IS NOT NULL").fetchone()[0]
            by_cat = dict(con.execute("SELECT category, COUNT(*) FROM images WHERE deleted_at IS NULL "
                                      "GROUP BY category ORDER BY category").fetchall())
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        return Stats(path=str(self.path), live=live, deleted=deleted, by_category=by_cat,
                     encoder=meta["encoder"], encoder_reason=meta.get("encoder_reason", ""),
                     dim=int(meta["dim"]),
                     index_version=int(meta["index_version"]), revision=int(meta["revision"]))

    # -- files

    def image_path(self, image_id: int) -> Path:
        rec = self.get(image_id)
        return self._image_file(rec.sha256, rec.ext)

    def thumbnail_path(self, image_id: int) -> Path:
        return self.thumbnail_file(self.get(image_id))

    def thumbnail_file(self, record: ImageRecord) -> Path:
        """The thumbnail of a record already in hand (no DB read: grids show dozens per rerun)."""
        return self._thumb_file(record.sha256)

    def _image_file(self, sha: str, ext: str) -> Path:
        return self.path / "images" / sha[:2] / f"{sha}.{ext}"

    def _thumb_file(self, sha: str) -> Path:
        return self.path / "thumbs" / sha[:2] / f"{sha}.jpg"

    def open_image(self, image_id: int) -> Image.Image:
        path = self.image_path(image_id)
        try:
            return decode_image(path.read_bytes(), path.name)
        except (OSError, BadImage) as exc:
            raise StoreError(f"image {image_id} cannot be read from {path} ({exc}); "
                             "run `rdm check --repair`") from exc

    # -- ingest

    def ingest(self, sources: Iterable[str | Path], **kwargs) -> IngestReport:
        """Ingest files, folders and zip archives; see ``ingest_candidates`` for the options."""
        return self.ingest_candidates(iter_sources(sources), **kwargs)

    def ingest_bytes(self, items: Iterable[tuple[str, bytes]], **kwargs) -> IngestReport:
        """Ingest uploaded (filename, bytes) pairs, zips included (the dashboard's upload)."""
        return self.ingest_candidates(bytes_sources(items), **kwargs)

    def ingest_candidates(self, candidates: Iterable[Candidate | IngestItem], *,
                          category: str | None = None, tags: str | Sequence[str] | None = None,
                          metadata: Mapping[str, Mapping[str, object]] | None = None,
                          batch_size: int = 32, progress: ProgressFn | None = None) -> IngestReport:
        """Decode, embed in batches, write files, then commit each batch in one transaction.

        Three stages overlap so the encoder is rarely idle: a reader thread hashes and decodes
        ahead, this thread embeds, and a writer thread stores and commits the previous batch.
        ``progress(done, total)`` runs on the calling thread (Streamlit needs that) after each
        commit. ``metadata`` maps an original file name to fields (caption, tags, category,
        source, licence, author) that override the batch-wide ``category``/``tags``.
        """
        candidates = list(candidates)
        total = len(candidates)
        items: list[IngestItem] = []
        batch: list[_Prepared] = []
        pending: list[tuple[Future, int]] = []

        def drain(block: bool) -> None:
            while pending and (block or pending[0][0].done()):
                future, done = pending.pop(0)
                items.extend(future.result())  # re-raises a failed commit here
                if progress:
                    progress(done, total)

        with ThreadPoolExecutor(1, thread_name_prefix="rdm-ingest-writer") as writer:
            for done, entry in _prefetch(self._prepare(candidates), depth=2 * batch_size):
                if isinstance(entry, IngestItem):
                    items.append(entry)
                else:
                    batch.append(entry)
                if len(batch) >= batch_size or (done == total and batch):
                    vectors = self.encoder.encode_images([p.image for p in batch])
                    pending.append((writer.submit(self._commit_batch, batch, vectors, category, tags,
                                                  metadata or {}), done))
                    batch = []
                drain(block=len(pending) > 1)  # at most one batch waits on the writer
            drain(block=True)
        if progress:
            progress(total, total)
        return IngestReport(tuple(items))

    def _prepare(self, candidates: Sequence[Candidate | IngestItem]) -> Iterator[tuple[int, "_Prepared | IngestItem"]]:
        """Read, hash, dedupe and decode each candidate (runs on the reader thread)."""
        seen: dict[str, str] = {}
        for done, cand in enumerate(candidates, start=1):
            if isinstance(cand, IngestItem):
                yield done, cand
                continue
            try:
                data = cand.read()
            except OSError as exc:
                yield done, IngestItem(cand.name, "skipped", f"cannot be read: {exc.strerror or exc}")
                continue
            sha = hashlib.sha256(data).hexdigest()
            existing = self._id_for_sha(sha)
            if existing is not None or sha in seen:
                yield done, IngestItem(cand.name, "duplicate",
                                       f"same bytes as image {existing}" if existing is not None
                                       else f"same bytes as {seen[sha]} in this batch", existing)
                continue
            try:
                image = decode_image(data, cand.name)
            except BadImage as exc:
                yield done, IngestItem(cand.name, "skipped", str(exc))
                continue
            seen[sha] = cand.name
            yield done, _Prepared(cand.name, data, sha, image)

    def _id_for_sha(self, sha: str) -> int | None:
        with self._read() as con:
            row = con.execute("SELECT id FROM images WHERE sha256 = ?", (sha,)).fetchone()
        return None if row is None else int(row[0])

    def _commit_batch(self, batch: Sequence["_Prepared"], vectors: np.ndarray, category, tags,
                      metadata) -> list[IngestItem]:
        # 1. Files before rows: a crash now leaves orphans, never rows without files.
        rows = []
        for prep, vec in zip(batch, vectors):
            ext = _ext_for(Image.open(io.BytesIO(prep.data)).format)
            atomic_write(self._image_file(prep.sha, ext), prep.data)
            atomic_write(self._thumb_file(prep.sha), make_thumbnail(prep.image))
            meta = metadata.get(prep.name, {})
            rows.append((prep.sha, prep.name, ext, str(meta.get("category", category or "")),
                         json.dumps(list(_parse_tags(meta.get("tags", tags)))),
                         str(meta.get("caption", "")), str(meta.get("source", "")),
                         str(meta.get("licence", "")), str(meta.get("author", "")),
                         prep.image.width, prep.image.height, _now(), vec))
        # 2. One transaction acknowledges the whole batch.
        with self._lock:
            index = self._loaded_index()  # before the commit, or a reload would double-add the batch
            ids = []
            with self._tx() as con:
                for *fields, vec in rows:
                    cur = con.execute(
                        "INSERT INTO images(sha256, filename, ext, category, tags, caption, source, "
                        "licence, author, width, height, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        fields)
                    ids.append(cur.lastrowid)
                    con.execute("INSERT INTO vectors(image_id, vec) VALUES (?, ?)",
                                (cur.lastrowid, np.asarray(vec, np.float32).tobytes()))
                self._bump(con, vectors_changed=True)
            # 3. The FAISS file follows; if this is lost, open()/check rebuild it from SQLite.
            index.add_with_ids(np.asarray(vectors, np.float32), np.asarray(ids, np.int64))
            self._write_index(index)
        return [IngestItem(prep.name, "added", "", i) for prep, i in zip(batch, ids)]

    # -- curation

    def edit(self, image_id: int, *, category: str | None = None,
             tags: str | Sequence[str] | None = None, caption: str | None = None) -> ImageRecord:
        return self.edit_many([image_id], category=category, tags=tags, caption=caption)[0]

    def edit_many(self, ids: Sequence[int], *, category: str | None = None,
                  tags: str | Sequence[str] | None = None, caption: str | None = None,
                  add_tags: str | Sequence[str] | None = None) -> list[ImageRecord]:
        """Set category/tags/caption (and/or add tags) on many images in one transaction."""
        self._require(ids)
        with self._tx() as con:
            for image_id in ids:
                if category is not None:
                    con.execute("UPDATE images SET category = ? WHERE id = ?", (category.strip(), image_id))
                if caption is not None:
                    con.execute("UPDATE images SET caption = ? WHERE id = ?", (caption.strip(), image_id))
                if tags is not None or add_tags is not None:
                    current = json.loads(con.execute("SELECT tags FROM images WHERE id = ?",
                                                     (image_id,)).fetchone()[0])
                    new = _parse_tags(tags) if tags is not None else tuple(current)
                    new = _parse_tags(list(new) + list(_parse_tags(add_tags)))
                    con.execute("UPDATE images SET tags = ? WHERE id = ?", (json.dumps(list(new)), image_id))
            self._bump(con, vectors_changed=False)
        return self.records(include_deleted=True, ids=list(ids))

    def _require(self, ids: Sequence[int]) -> None:
        found = {r.id for r in self.records(include_deleted=True, ids=list(ids))}
        missing = [i for i in ids if int(i) not in found]
        if missing:
            raise StoreError(f"no image with id {', '.join(map(str, missing))} in the DB at {self.path}")

    def delete(self, ids: int | Sequence[int]) -> int:
        """Soft delete: hidden from search and the grid, restorable. Returns how many changed."""
        return self._set_deleted(ids, deleted=True)

    def restore(self, ids: int | Sequence[int]) -> int:
        return self._set_deleted(ids, deleted=False)

    def _set_deleted(self, ids: int | Sequence[int], deleted: bool) -> int:
        ids = [ids] if isinstance(ids, int) else list(ids)
        self._require(ids)
        sql = ("UPDATE images SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL" if deleted else
               "UPDATE images SET deleted_at = NULL WHERE id = ? AND deleted_at IS NOT NULL")
        with self._lock:
            index = self._loaded_index()
            with self._tx() as con:
                changed = [i for i in ids
                           if con.execute(sql, (_now(), i) if deleted else (i,)).rowcount]
                if changed:
                    self._bump(con, vectors_changed=True)
            if changed:
                if deleted:
                    index.remove_ids(np.asarray(changed, np.int64))
                else:
                    index.add_with_ids(self._vectors(changed), np.asarray(changed, np.int64))
                self._write_index(index)
        return len(changed)

    def purge(self, ids: int | Sequence[int]) -> int:
        """Hard delete: rows, vectors and files are gone for good."""
        ids = [ids] if isinstance(ids, int) else list(ids)
        self._require(ids)
        records = self.records(include_deleted=True, ids=ids)
        with self._lock:
            index = self._loaded_index()
            with self._tx() as con:
                for rec in records:
                    con.execute("DELETE FROM images WHERE id = ?", (rec.id,))
                self._bump(con, vectors_changed=True)
            index.remove_ids(np.asarray(ids, np.int64))
            self._write_index(index)
        for rec in records:  # after the commit: a crash here leaves orphans that check removes
            for f in (self._image_file(rec.sha256, rec.ext), self._thumb_file(rec.sha256)):
                f.unlink(missing_ok=True)
        return len(records)

    def reindex(self, encoder: Encoder, *, reason: str = "", batch_size: int = 32,
                progress: ProgressFn | None = None) -> int:
        """Re-embed every image (deleted ones too, so restore works) and switch encoders.

        All new vectors are committed in one transaction: killed halfway, the DB keeps the old
        encoder and vectors intact.
        """
        records = self.records(include_deleted=True)
        vectors: list[np.ndarray] = []
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            vectors.append(encoder.encode_images([self.open_image(r.id) for r in chunk]))
            if progress:
                progress(min(start + batch_size, len(records)), len(records))
        all_vecs = np.concatenate(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)
        with self._lock:
            with self._tx() as con:
                con.execute("DELETE FROM vectors")
                con.executemany("INSERT INTO vectors(image_id, vec) VALUES (?, ?)",
                                [(r.id, v.astype(np.float32).tobytes()) for r, v in zip(records, all_vecs)])
                con.execute("UPDATE meta SET value = ? WHERE key = 'encoder'", (encoder.name,))
                con.execute("UPDATE meta SET value = ? WHERE key = 'dim'", (str(encoder.dim),))
                con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('encoder_reason', ?)",
                            (reason or f"re-embedded with {encoder.name} by `rdm reindex`",))
                self._bump(con, vectors_changed=True)
            self._encoder = encoder
            self._write_index(self._build_index())
        return len(records)

    # -- vectors and the FAISS index

    def _vectors(self, ids: Sequence[int]) -> np.ndarray:
        with self._read() as con:
            rows = dict(con.execute(
                f"SELECT image_id, vec FROM vectors WHERE image_id IN ({','.join('?' * len(ids))})",
                [int(i) for i in ids]).fetchall())
        return np.stack([np.frombuffer(rows[int(i)], np.float32) for i in ids]).astype(np.float32)

    def vectors(self, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of live images, or of the given ids; rows are L2-normalised."""
        if ids is None:
            with self._read() as con:
                rows = con.execute("SELECT v.image_id, v.vec FROM vectors v JOIN images i ON i.id = "
                                   "v.image_id WHERE i.deleted_at IS NULL ORDER BY v.image_id").fetchall()
            if not rows:
                return np.zeros(0, np.int64), np.zeros((0, int(self.meta("dim"))), np.float32)
            return (np.array([r[0] for r in rows], np.int64),
                    np.stack([np.frombuffer(r[1], np.float32) for r in rows]))
        return np.asarray(ids, np.int64), self._vectors(ids)

    def _build_index(self) -> faiss.Index:
        ids, vecs = self.vectors()
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(int(self.meta("dim"))))
        if len(ids):
            index.add_with_ids(vecs, ids)
        return index

    def _write_index(self, index: faiss.Index) -> None:
        atomic_write(self.index_file, faiss.serialize_index(index).tobytes())
        self._index, self._index_version = index, self.index_version

    def _index_problem(self, index: faiss.Index | None) -> str:
        """Why the FAISS index does not match SQLite's live vectors ('' if it does)."""
        if index is None:
            return "FAISS index file is missing or unreadable"
        dim = int(self.meta("dim"))
        if index.d != dim:
            return f"FAISS index has dimension {index.d}, the DB's encoder has {dim}"
        live, _ = self.vectors()
        indexed = np.sort(faiss.vector_to_array(index.id_map)) if index.ntotal else np.zeros(0, np.int64)
        if not np.array_equal(np.sort(live), indexed):
            missing = len(np.setdiff1d(live, indexed))
            extra = len(np.setdiff1d(indexed, live))
            dupes = len(indexed) - len(np.unique(indexed))
            return (f"FAISS index is out of step with the DB ({missing} live image(s) missing, "
                    f"{extra} extra, {dupes} duplicated)")
        return ""

    def _read_index_file(self) -> faiss.Index | None:
        try:
            return faiss.deserialize_index(np.fromfile(self.index_file, dtype=np.uint8))
        except Exception:
            return None

    def _loaded_index(self) -> faiss.Index:
        """The FAISS index, reloaded when another process changed the DB, rebuilt if stale."""
        with self._lock:
            version = self.index_version
            if self._index is None or self._index_version != version:
                index = self._read_index_file()
                problem = self._index_problem(index)
                if problem:
                    # Serve correct results now; `rdm check --repair` persists the rebuild.
                    self.index_note = f"{problem}; rebuilt in memory from the DB"
                    index = self._build_index()
                self._index, self._index_version = index, version
            return self._index

    # -- search

    def search_vectors(self, queries: np.ndarray, k: int = 10, *, category: str | None = None,
                       tag: str | None = None, exclude: Sequence[int] = ()) -> list[list[Hit]]:
        """Top-k live images per query vector (cosine; vectors are normalised)."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        dim = int(self.meta("dim"))
        if queries.shape[1] != dim:
            raise EncoderMismatch(f"query vectors have dimension {queries.shape[1]}, the DB at "
                                  f"{self.path} holds {dim}-d vectors from {self.encoder_name!r}")
        index = self._loaded_index()
        params = None
        if category or tag or exclude:
            allowed = [r.id for r in self.records(category=category, tag=tag) if r.id not in set(exclude)]
            if not allowed:
                return [[] for _ in queries]
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed, np.int64)))
        k_eff = max(0, min(int(k), index.ntotal))
        if k_eff == 0:
            return [[] for _ in queries]
        scores, ids = index.search(queries, k_eff, params=params)
        found = {r.id: r for r in self.records(ids=[int(i) for i in np.unique(ids) if i >= 0])}
        return [[Hit(int(i), float(s), found[int(i)]) for s, i in zip(srow, irow) if i >= 0 and int(i) in found]
                for srow, irow in zip(scores, ids)]

    def search(self, text: str, k: int = 10, *, category: str | None = None,
               tag: str | None = None) -> list[Hit]:
        if not text.strip():
            raise StoreError("the search text is empty: describe what the images should show")
        return self.search_vectors(self.encoder.encode_texts([text]), k, category=category, tag=tag)[0]

    def similar(self, image_id: int, k: int = 10, *, category: str | None = None) -> list[Hit]:
        """Images most like ``image_id`` (itself excluded)."""
        self._require([image_id])
        return self.search_vectors(self._vectors([image_id]), k, category=category,
                                   exclude=[int(image_id)])[0]

    # -- consistency

    def check(self, repair: bool = False) -> CheckReport:
        """Find (and with ``repair`` fix) every way files, rows, vectors and FAISS can disagree."""
        problems: list[str] = []
        repaired: list[str] = []
        with self._lock:
            with self._read() as con:
                integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
            if integrity != "ok":
                problems.append(f"SQLite integrity check failed: {integrity}")
            records = self.records(include_deleted=True)
            known_files, missing_file_ids = set(), set()
            # Rows whose original is gone cannot be served; repair removes them.
            for rec in records:
                f = self._image_file(rec.sha256, rec.ext)
                known_files.add(f)
                if not f.exists():
                    missing_file_ids.add(rec.id)
                    problems.append(f"image {rec.id} ({rec.filename}): original file missing")
                    if repair:
                        with self._tx() as con:
                            con.execute("DELETE FROM images WHERE id = ?", (rec.id,))
                            self._bump(con, vectors_changed=True)
                        repaired.append(f"removed image {rec.id} ({rec.filename}): its file is gone")
                    continue
                thumb = self._thumb_file(rec.sha256)
                known_files.add(thumb)
                if not thumb.exists():
                    problems.append(f"image {rec.id}: thumbnail missing")
                    if repair:
                        atomic_write(thumb, make_thumbnail(self.open_image(rec.id)))
                        repaired.append(f"rebuilt the thumbnail of image {rec.id}")
            with self._read() as con:
                no_vec = [r[0] for r in con.execute(
                    "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM vectors)")]
            for image_id in no_vec:
                if image_id in missing_file_ids:
                    continue
                problems.append(f"image {image_id}: no vector")
                if repair:
                    vec = self.encoder.encode_images([self.open_image(image_id)])[0]
                    with self._tx() as con:
                        con.execute("INSERT INTO vectors(image_id, vec) VALUES (?, ?)",
                                    (image_id, vec.astype(np.float32).tobytes()))
                        self._bump(con, vectors_changed=True)
                    repaired.append(f"re-embedded image {image_id}")
            # Files no row acknowledges: leftovers of an interrupted ingest or purge.
            for folder in ("images", "thumbs"):
                for f in sorted((self.path / folder).rglob("*")) if (self.path / folder).exists() else []:
                    if f.is_file() and f not in known_files:
                        kind = "temporary file" if f.name.endswith(".tmp") else "file with no DB row"
                        problems.append(f"{kind}: {f.relative_to(self.path)}")
                        if repair:
                            f.unlink()
                            repaired.append(f"removed {f.relative_to(self.path)}")
            for f in self.path.glob(".*.tmp"):
                problems.append(f"temporary file: {f.name}")
                if repair:
                    f.unlink()
                    repaired.append(f"removed {f.name}")
            problem = self._index_problem(self._read_index_file())
            if problem:
                problems.append(problem)
                if repair:
                    self._write_index(self._build_index())
                    repaired.append("rebuilt the FAISS index from the DB's vectors")
            if repair:
                self.index_note = ""
        return CheckReport(tuple(problems), tuple(repaired))
