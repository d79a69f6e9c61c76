"""The catalog's base: schema, connections, transactions, meta, and which vector file is in use.

SQLite runs in WAL mode, so readers (the dashboard) never block the writer (the CLI), with
``synchronous = FULL``: a committed transaction survives a power cut. Ids are AUTOINCREMENT and
never reused, since runs and the vector index refer to them. Every write bumps ``revision``; a
write that changes which vectors are live also bumps ``index_version``. The vectors themselves are
stored once, outside SQLite (``rdm.db.vectorfile``): the ``vectors`` table lists the ids that have a row
there, and the catalog writes that row inside the transaction that lists it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from rdm.db import history, texts
from rdm.db.vectorfile import VECTOR_FILE, VectorFile, vector_path
from rdm.errors import StoreError

ADDED_TABLES = (
    """CREATE TABLE IF NOT EXISTS hashes (  -- perceptual hash of each image's thumbnail (rdm/db/copies.py)
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


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


SQL_CHUNK = 10_000  # ids per IN (...) list


class CatalogBase:
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
        if not self.writable:  # WAL needs its -shm file: opened read-only, as the folder is (a copy, a mount)
            return self._connect_read_only()
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

    def _connect_read_only(self) -> sqlite3.Connection:
        wal = self.db_file.with_name(self.db_file.name + "-wal")
        # immutable (no -shm needed) is exact when every commit is in the main file, as a clean close leaves it
        flags = "mode=ro" if wal.exists() and wal.stat().st_size else "mode=ro&immutable=1"
        try:
            con = sqlite3.connect(f"{self.db_file.resolve().as_uri()}?{flags}", uri=True, timeout=30,
                                  isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("SELECT 1 FROM meta LIMIT 1")
        except sqlite3.Error as exc:
            raise StoreError(f"the DB at {self.db_file.parent} is in a read-only folder and cannot be read there "
                             f"({exc}): a writer left commits in {wal.name}. Open it once where it is writable "
                             "(or copy the folder somewhere writable)") from exc
        return con

    @property
    def writable(self) -> bool:
        return os.access(self.db_file.parent, os.W_OK) and os.access(self.db_file, os.W_OK)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        if not self.writable:
            raise StoreError(f"the DB at {self.db_file.parent} is in a read-only folder: searching, `rdm stats` and "
                             "`rdm check` work, but to change it make the folder writable or copy it somewhere writable")
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            yield con
            con.execute("COMMIT")
        except BaseException as exc:
            if con.in_transaction:  # a COMMIT that failed (disk full) has rolled back already
                con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise StoreError(f"the disk holding the DB at {self.db_file.parent} is full: this change was not "
                                 "stored (everything committed before it is kept). Free some space and run the "
                                 "command again; `rdm check --repair` removes what it left behind") from exc
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

    def vector_file(self, con: sqlite3.Connection | None = None) -> VectorFile:
        """The file the DB's vectors are in now (a re-embed moves them to a new one)."""
        if con is None:
            with self.read() as con:
                return self.vector_file(con)
        name, dim = con.execute("SELECT (SELECT value FROM meta WHERE key = 'vectors_file'), "
                                "(SELECT value FROM meta WHERE key = 'dim')").fetchone()  # one statement: one commit
        held = self._vector_file
        if held is None or held.path.name != name or held.dim != int(dim):
            held = self._vector_file = VectorFile(vector_path(self.db_file.parent, name), int(dim))
        return held


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
