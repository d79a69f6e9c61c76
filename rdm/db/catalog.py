"""The DB's SQLite file: schema, transactions, image rows, which have a vector, curation edits and meta.

SQLite runs in WAL mode, so readers (the dashboard) never block the writer (the CLI), with
``synchronous = FULL``: a committed transaction survives a power cut. Ids are AUTOINCREMENT and
never reused, since runs and the vector index refer to them. Every write bumps ``revision``; a
write that changes which vectors are live also bumps ``index_version``. The vectors themselves are
stored once, outside SQLite (``rdm.db.vectorfile``): the ``vectors`` table lists the ids that have a row
there, and the catalog writes that row inside the transaction that lists it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Collection, Iterator, Mapping, Sequence

import numpy as np

from rdm.db import history, texts
from rdm.db.records import ImageRecord, Stats, parse_tags
from rdm.db.vectorfile import VECTOR_FILE, VectorFile, usable
from rdm.errors import StoreError

# Tables (and indexes) added after the first release: created on first use in DBs that predate them.
ADDED_TABLES = (
    """CREATE TABLE IF NOT EXISTS hashes (  -- perceptual hash of each image's thumbnail (rdm/copies.py)
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        phash TEXT NOT NULL
    );""",
    history.TABLE,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: runs and the index refer to ids
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
CREATE TABLE IF NOT EXISTS vectors (  -- the images with a row in the vector file (meta vectors_file)
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + "\n" + "\n".join(ADDED_TABLES)

IMAGE_COLUMNS = ("sha256", "filename", "ext", "category", "tags", "caption", "source", "licence", "author",
                 "width", "height", "added_at")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


SQL_CHUNK = 10_000  # ids per IN (...) list


class Catalog:
    """One ``meta.sqlite``. Thread-safe: every call opens its own connection."""

    def __init__(self, db_file: Path):
        self.db_file = Path(db_file)
        self._schema_checked = False
        self._ids_cache: dict[tuple, np.ndarray] = {}  # (revision, filters) -> ids: see image_ids
        self._readers = threading.local()
        self._vector_file: VectorFile | None = None

    @staticmethod
    def build(db_file: Path, encoder_name: str, dim: int, encoder_reason: str,
              settings: Mapping[str, str] | None = None) -> None:
        """Write a new, empty catalog to ``db_file`` (the caller renames it into place); ``settings``: the
        choices it keeps from the start (its vector backend)."""
        con = sqlite3.connect(db_file, isolation_level=None)
        try:
            con.executescript(SCHEMA + texts.SCHEMA)
            con.execute("BEGIN")
            con.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
                ("encoder", encoder_name), ("dim", str(dim)), ("index_version", "0"),
                ("encoder_reason", encoder_reason), ("revision", "0"), ("created_at", now()),
                ("vectors_file", VECTOR_FILE), *(settings or {}).items()])
            con.execute("COMMIT")
        finally:
            con.close()

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_file, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("PRAGMA journal_mode = WAL")  # readers (dashboard) don't block the writer (CLI)
        con.execute("PRAGMA synchronous = FULL")
        if not self._schema_checked:
            _move_vectors_out(con, self.db_file.parent)
            con.executescript("".join(ADDED_TABLES))
            texts.ensure(con)
            self._schema_checked = True
        return con

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
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
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads, one per thread and kept: opening one (with its pragmas) cost more than
        a search's queries. In autocommit mode every statement sees the latest commit."""
        con = getattr(self._readers, "con", None)
        if con is None:
            con = self._readers.con = self._connect()
        yield con

    # -- meta

    def meta(self, key: str) -> str:
        with self.read() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StoreError(f"DB at {self.db_file.parent} has no {key!r} entry; run `rdm check --repair`")
        return row[0]

    def setting(self, key: str, default: str) -> str:
        """An optional meta entry (a choice the DB keeps, e.g. its index kind)."""
        with self.read() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_settings(self, values: Mapping[str, str]) -> None:
        """Keep these choices, all in one transaction."""
        with self.tx() as con:
            con.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(values.items()))

    @staticmethod
    def bump(con: sqlite3.Connection, vectors_changed: bool) -> int:
        """Count this write; returns the index version it leaves (read inside the same transaction,
        so it is the version of exactly this commit, whatever other processes do)."""
        keys = ("revision", "index_version") if vectors_changed else ("revision",)
        for key in keys:
            con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ?", (key,))
        return int(con.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone()[0])

    def integrity(self) -> str:
        with self.read() as con:
            return con.execute("PRAGMA integrity_check").fetchone()[0]

    # -- records

    @staticmethod
    def _record(row: sqlite3.Row) -> ImageRecord:
        d = dict(row)
        d["tags"] = tuple(json.loads(d["tags"]))
        return ImageRecord(**d)

    def get(self, image_id: int) -> ImageRecord:
        with self.read() as con:
            row = con.execute("SELECT * FROM images WHERE id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise StoreError(f"no image with id {image_id} in the DB at {self.db_file.parent}")
        return self._record(row)

    def records(self, *, include_deleted: bool = False, only_deleted: bool = False,
                category: str | None = None, tag: str | None = None, text: str | None = None,
                ids: Sequence[int] | None = None) -> list[ImageRecord]:
        sql, args = _filter_sql(include_deleted=include_deleted, only_deleted=only_deleted,
                                category=category, tag=tag, text=text, ids=ids)
        with self.read() as con:
            rows = con.execute(f"SELECT * FROM images WHERE {sql} ORDER BY id", args).fetchall()
        return [self._record(r) for r in rows]

    def live_ids(self) -> np.ndarray:
        """Ids of the live images that have a vector: what the index must hold."""
        with self.read() as con:
            return np.fromiter((r[0] for r in con.execute(
                "SELECT v.image_id FROM vectors v JOIN images i ON i.id = v.image_id WHERE i.deleted_at IS NULL "
                "ORDER BY v.image_id")), np.int64)

    def image_ids(self, *, category: str | None = None, tag: str | None = None,
                  text: str | None = None) -> np.ndarray:
        """Ids of the live images that pass the filters, straight from SQL (no record per row: search
        filters a million rows with this), kept per DB revision: a curator repeats a filter."""
        key = (int(self.meta("revision")), category, tag, text)
        found = self._ids_cache.get(key)
        if found is None:
            sql, args = _filter_sql(category=category, tag=tag, text=text)
            with self.read() as con:
                found = np.fromiter((r[0] for r in con.execute(f"SELECT id FROM images WHERE {sql}", args)), np.int64)
            if len(self._ids_cache) >= 8:  # threads share the cache: a lost race only drops an entry twice
                self._ids_cache.pop(next(iter(self._ids_cache), None), None)
            self._ids_cache[key] = found
        return found

    def require(self, ids: Sequence[int]) -> None:
        found = {r.id for r in self.records(include_deleted=True, ids=list(ids))}
        missing = [i for i in ids if int(i) not in found]
        if missing:
            raise StoreError(f"no image with id {', '.join(map(str, missing))} in the DB at {self.db_file.parent}")

    def categories(self) -> list[str]:
        with self.read() as con:
            return [r[0] for r in con.execute(
                "SELECT DISTINCT category FROM images WHERE category != '' ORDER BY category")]

    def tags(self) -> list[str]:
        with self.read() as con:
            return [r[0] for r in con.execute(
                "SELECT DISTINCT j.value FROM images, json_each(images.tags) j "
                "WHERE images.deleted_at IS NULL ORDER BY j.value")]

    def stats(self, path: Path) -> Stats:
        with self.read() as con:
            live = con.execute("SELECT COUNT(*) FROM images WHERE deleted_at IS NULL").fetchone()[0]
            deleted = con.execute("SELECT COUNT(*) FROM images WHERE deleted_at IS NOT NULL").fetchone()[0]
            by_cat = dict(con.execute("SELECT category, COUNT(*) FROM images WHERE deleted_at IS NULL "
                                      "GROUP BY category ORDER BY category").fetchall())
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        return Stats(path=str(path), live=live, deleted=deleted, by_category=by_cat, encoder=meta["encoder"],
                     encoder_reason=meta.get("encoder_reason", ""), dim=int(meta["dim"]),
                     index_version=int(meta["index_version"]), revision=int(meta["revision"]))

    def id_for_sha(self, sha: str) -> int | None:
        with self.read() as con:
            row = con.execute("SELECT id FROM images WHERE sha256 = ?", (sha,)).fetchone()
        return None if row is None else int(row[0])

    def sources(self) -> set[str]:
        """Where the images came from (URLs of downloaded ones): a URL list resumes past these."""
        with self.read() as con:
            return {r[0] for r in con.execute("SELECT DISTINCT source FROM images WHERE source != ''")}

    # -- writes

    def insert(self, rows: Sequence[tuple[dict, np.ndarray]], who: str = "") -> tuple[list[int], int]:
        """Image rows (column -> value) with their vectors, acknowledged in one transaction; returns
        their ids and the index version of the commit."""
        ids, batch, at = [], history.new_batch(), now()
        with self.tx() as con:
            for fields, _ in rows:
                cur = con.execute(f"INSERT INTO images({', '.join(IMAGE_COLUMNS)}) "
                                  f"VALUES ({', '.join('?' * len(IMAGE_COLUMNS))})",
                                  [fields[c] for c in IMAGE_COLUMNS])
                ids.append(cur.lastrowid)
                con.execute("INSERT INTO vectors(image_id) VALUES (?)", (cur.lastrowid,))
                if fields.get("phash"):
                    con.execute("INSERT INTO hashes(image_id, phash) VALUES (?, ?)", (cur.lastrowid, fields["phash"]))
                history.record(con, batch, at, who, "upload", cur.lastrowid, after={
                    "filename": fields["filename"], "category": fields["category"], "caption": fields["caption"]})
            if rows:  # on disk before the commit that lists them
                self.vector_file(con).write(ids, np.stack([np.asarray(v, np.float32) for _, v in rows]))
            version = self.bump(con, vectors_changed=True)
        return ids, version

    def edit_many(self, ids: Sequence[int], *, category: str | None, tags: str | Sequence[str] | None,
                  caption: str | None, add_tags: str | Sequence[str] | None, who: str = "") -> None:
        batch, at = history.new_batch(), now()
        with self.tx() as con:
            for image_id in ids:
                row = con.execute("SELECT category, tags, caption FROM images WHERE id = ?", (image_id,)).fetchone()
                before = {"category": row["category"], "tags": json.loads(row["tags"]), "caption": row["caption"]}
                after = dict(before)
                if category is not None:
                    after["category"] = category.strip()
                if caption is not None:
                    after["caption"] = caption.strip()
                if tags is not None or add_tags is not None:
                    new = parse_tags(tags) if tags is not None else tuple(before["tags"])
                    after["tags"] = list(parse_tags(list(new) + list(parse_tags(add_tags))))
                changed = [f for f in history.EDITABLE if after[f] != before[f]]
                if not changed:
                    continue
                con.execute(f"UPDATE images SET {', '.join(f'{f} = ?' for f in changed)} WHERE id = ?",
                            [json.dumps(after[f]) if f == "tags" else after[f] for f in changed] + [image_id])
                history.record(con, batch, at, who, "edit", image_id, {f: before[f] for f in changed},
                               {f: after[f] for f in changed})
            self.bump(con, vectors_changed=False)

    def set_deleted(self, ids: Sequence[int], deleted: bool, who: str = "") -> tuple[list[int], int]:
        """Soft-delete (or restore) ``ids``; returns those that changed and the index version after."""
        sql = ("UPDATE images SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL" if deleted else
               "UPDATE images SET deleted_at = NULL WHERE id = ? AND deleted_at IS NOT NULL")
        batch, at = history.new_batch(), now()
        with self.tx() as con:
            changed = [i for i in ids if con.execute(sql, (at, i) if deleted else (i,)).rowcount]
            for image_id in changed:
                history.record(con, batch, at, who, "delete" if deleted else "restore", image_id,
                               {"deleted": not deleted}, {"deleted": deleted})
            version = self.bump(con, vectors_changed=bool(changed))
        return changed, version

    def remove(self, ids: Sequence[int], who: str = "") -> int:
        """Rows and their vectors, gone for good (their history stays); returns the index version after."""
        batch, at = history.new_batch(), now()
        with self.tx() as con:
            for image_id in ids:
                row = con.execute("SELECT filename, category, caption FROM images WHERE id = ?",
                                  (int(image_id),)).fetchone()
                con.execute("DELETE FROM images WHERE id = ?", (int(image_id),))
                if row is not None:
                    history.record(con, batch, at, who, "purge", image_id, before=dict(row))
            vectors = self.vector_file(con)
            version = self.bump(con, vectors_changed=True)
        vectors.clear(ids)  # after the commit: a failed one keeps its rows' vectors
        return version

    def history(self, image_id: int | None = None, limit: int = 500, *,
                batch: str | None = None) -> list[history.Change]:
        with self.read() as con:
            return history.changes(con, image_id=image_id, batch=batch, limit=limit)

    def revert(self, change_id: int, *, whole_batch: bool, who: str = "") -> tuple[history.Reverted, int]:
        """Revert one change, or every change of its batch, in one transaction; and the index version after."""
        with self.tx() as con:
            target = history.change(con, change_id)
            targets = [c for c in history.changes(con, batch=target.batch, limit=100_000)
                       if c.undone_by is None] if whole_batch else [target]
            done = history.revert(con, targets, batch=history.new_batch(), at=now(), who=who)
            version = self.bump(con, vectors_changed=bool(done.hidden or done.shown))
        return done, version

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
            version = int(con.execute("SELECT value FROM meta WHERE key = 'index_version'").fetchone()[0])
            made = VectorFile.write_new(old.path.with_name(f"vectors-{version + 1}.f32"), dim, ids, vectors)
            try:
                con.execute("DELETE FROM vectors")
                con.executemany("INSERT INTO vectors(image_id) VALUES (?)", [(int(i),) for i in ids])
                con.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", [
                    ("encoder", name), ("dim", str(dim)), ("encoder_reason", reason), ("vectors_file", made.path.name)])
                self.bump(con, vectors_changed=True)
            except BaseException:
                made.path.unlink(missing_ok=True)
                raise
        old.path.unlink(missing_ok=True)

    # -- vectors

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

    def vector_file(self, con: sqlite3.Connection | None = None) -> VectorFile:
        """The file the DB's vectors are in now (a re-embed moves them to a new one)."""
        if con is None:
            with self.read() as con:
                return self.vector_file(con)
        name, dim = con.execute("SELECT (SELECT value FROM meta WHERE key = 'vectors_file'), "
                                "(SELECT value FROM meta WHERE key = 'dim')").fetchone()  # one statement: one commit
        held = self._vector_file
        if held is None or held.path.name != name or held.dim != int(dim):
            held = self._vector_file = VectorFile(self.db_file.parent / name, int(dim))
        return held

    # -- curated text (rdm/db/texts.py)

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
        sql, args = _filter_sql(ids=ids)
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

    def spare_vector_files(self, remove: bool = False) -> list[str]:
        """Vector files beside the one in use (a re-embed killed before its commit, or one being written aside),
        and with ``remove`` deleted: under the write lock, so a re-embed running now is waited for, not hit."""
        with self.tx() as con:
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


def _filter_sql(*, include_deleted: bool = False, only_deleted: bool = False, category: str | None = None,
                tag: str | None = None, text: str | None = None,
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
        clauses.append("(caption LIKE ? ESCAPE '\\' OR filename LIKE ? ESCAPE '\\' OR tags LIKE ? ESCAPE '\\')")
        literal = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")  # typed % and _ are text
        args += [f"%{literal}%"] * 3
    if ids is not None:
        clauses.append(f"id IN ({','.join('?' * len(ids)) or 'NULL'})")
        args += [int(i) for i in ids]
    return " AND ".join(clauses), args


def _move_vectors_out(con: sqlite3.Connection, folder: Path) -> None:
    """A DB from before the vector file kept each vector as a blob in ``vectors``: move them into the file,
    once, in one transaction (the file is written before the commit that drops the blobs)."""
    if "vec" not in {r[1] for r in con.execute("PRAGMA table_info(vectors)")}:
        return
    con.execute("BEGIN IMMEDIATE")
    try:
        if "vec" in {r[1] for r in con.execute("PRAGMA table_info(vectors)")}:  # not moved meanwhile by another
            dim = int(con.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()[0])
            target = VectorFile.write_new(folder / VECTOR_FILE, dim, [], np.zeros((0, dim), np.float32))
            rows = con.execute("SELECT image_id, vec FROM vectors ORDER BY image_id")
            while part := rows.fetchmany(SQL_CHUNK):
                target.write([r[0] for r in part], np.stack([np.frombuffer(r[1], np.float32) for r in part]))
            for statement in ("CREATE TABLE vectors_listed (image_id INTEGER PRIMARY KEY REFERENCES images(id) "
                              "ON DELETE CASCADE)",
                              "INSERT INTO vectors_listed(image_id) SELECT image_id FROM vectors",
                              "DROP TABLE vectors",
                              "ALTER TABLE vectors_listed RENAME TO vectors"):
                con.execute(statement)  # executescript would commit first
            con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('vectors_file', ?)", (VECTOR_FILE,))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    try:
        con.execute("VACUUM")  # give the blobs' pages back to the disk
    except sqlite3.OperationalError:  # another connection is reading: the pages are reused by later writes
        pass
