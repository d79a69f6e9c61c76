"""``IndexKeeper``: the DB's vector index as one process holds it, kept in step with the catalog.

It knows which engine the DB recorded (a FAISS file or a Milvus collection), which index version the
index in memory holds, how many changes it carries that its saved copy lacks, and when to save, catch
up or rebuild it. The store calls it after each of its commits (``follow``) and before each search
(``current``); other processes' commits are noticed by the catalog's index version. Saving and rebuilding
are writes: they hold the folder's write lock, so an index built from old vectors never lands after a
re-embed's (a search that caught up saves only when the lock is free).
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Callable

from rdm.db.catalog import Catalog
from rdm.db.writelock import WriteLock
from rdm.db.index import (LAZY_MIN, IndexBackend, IndexInfo, VectorIndex, backend_settings, catch_up,
                          needs_rebuild, open_backend, save_due)
from rdm.errors import DiskFull, StoreError
from rdm.settings import vector_config

log = logging.getLogger(__name__)


class IndexKeeper:
    """The index of the DB at ``path`` in this process; ``writes`` is the folder's write lock."""

    def __init__(self, path: Path, catalog: Catalog, writes: WriteLock):
        self.path, self.catalog, self._writes = Path(path), catalog, writes
        self._lock = threading.RLock()  # this process's copy of the index, between threads
        self._index: VectorIndex | None = None
        self._version = -1  # the catalog's index version the index in memory holds
        self._unsaved = 0  # changes made to the index since its saved copy was written (see save_due)
        self._encoder = ""  # the encoder whose vectors the index in memory holds
        self._backend: IndexBackend | None = None
        self._recorded: tuple[str, str] = ("", "")  # the DB's settings the backend was opened from
        self.note = ""  # set when the saved index had to be rebuilt in memory on open

    @property
    def backend(self) -> IndexBackend:
        """Where the index lives, as the DB records it (it may move: `rdm index --backend`)."""
        recorded = (self.catalog.setting("vector_backend", "faiss"), self.catalog.setting("milvus_collection", ""))
        if self._backend is None or recorded != self._recorded:  # first use, or the DB moved engines
            self._backend = open_backend(self.path, self.catalog.setting)
            self._recorded, self._index = recorded, None
        return self._backend

    @property
    def kind(self) -> str:
        """auto (flat, then IVF or HNSW from IVF_MIN vectors), flat, ivf or hnsw: the DB keeps the choice."""
        return self.catalog.setting("index_kind", "auto")

    @property
    def info(self) -> IndexInfo:
        """The index in use: its kind and, for IVF or HNSW, its recall@10 measured when it was built."""
        index = self.current()
        return replace(index.info, vectors=index.size) if index.info.kind == "flat" else index.info  # nothing trained

    def rebuild(self, kind: str | None = None, backend: str | None = None, *, complete: bool = False) -> IndexInfo:
        """Rebuild the index from the catalog's live vectors and save it; ``kind`` is kept for later, and
        ``backend`` (faiss | milvus; RDM_MILVUS_URI says which server) moves the DB's index to that engine,
        recorded only once the new index is built (a failure leaves the DB on its old one). ``complete``: refuse
        when live images lack a usable vector, rather than build an index that drops them (`rdm index`)."""
        with self._writes.held(), self._lock:
            target, choices = self.backend, {}
            if backend is not None and backend != target.name:
                choices = backend_settings(backend, vector_config().milvus_uri)
                target = open_backend(self.path, lambda key, default: choices.get(key, default))
            kind = kind or self.kind
            if kind not in target.kinds:
                raise StoreError(f"unknown index kind {kind!r} for the {target.name} backend: "
                                 f"use one of {', '.join(target.kinds)}")
            version = self._catalog_version()  # read first: a commit landing meanwhile makes the tag older
            ids, vecs = self.catalog.vectors()
            if complete and len(ids) < (live := len(self.catalog.live_ids())):
                raise StoreError(f"{live - len(ids)} of the {live} live images of the DB at {self.path} have no usable "
                                 f"vector (the vector file {self.catalog.vector_file().path.name} is missing, short or "
                                 "damaged): the index is not rebuilt without them, which would drop them from search. "
                                 "Run `rdm check --repair` (it re-embeds them) first")
            index = target.build(ids, vecs, int(self.catalog.meta("dim")), kind)
            self.catalog.set_settings({**choices, "index_kind": kind})
            self._keep(index, version, now=True)  # saved by the backend now recorded
            self.note = ""
            return index.info

    def follow(self, index: VectorIndex, version: int, change: Callable[[VectorIndex], None], changed: int) -> None:
        """After the store's commit that made ``version``: ``change`` the index (``changed`` vectors) if it held
        the version just before, else (another process committed in between) rebuild it from the catalog;
        save it when due. An index that outgrew its kind (flat past IVF_MIN, IVF past twice its training) is
        rebuilt."""
        try:
            if self._version == version - 1:
                change(index)
                if not needs_rebuild(index, self.kind, self.backend.large_kind):
                    return self._keep(index, version, changed=changed)
            self.rebuild()
        except DiskFull as exc:  # the commit stands, and the catalog is what an index is caught up from
            log.warning("the index of %s was not saved after a commit: %s", self.path, exc)
            self.note = (f"the index file could not be saved ({exc}); searches here and in other processes are "
                         "caught up from the DB, and `rdm check --repair` saves it once there is space")

    def save(self) -> None:
        """Write the index now, with every change this process made (another catches up otherwise)."""
        with self._writes.held(), self._lock:
            self._keep(self.current(), self._version, now=True)

    def current(self) -> VectorIndex:
        """The index, reloaded when another process changed the DB, caught up or rebuilt if stale."""
        with self._lock:
            backend, version, encoder = self.backend, self._catalog_version(), self.catalog.meta("encoder")
            if self._index is not None and not self._index.intact:  # its file was cut short under it
                self._index = None
            if self._index is None or self._version != version:
                # a large index in memory is caught up with the catalog; a small one is read again from its
                # file (always saved), as is any index on the first use here or after an encoder switch
                held = self._index if self._encoder == encoder else None
                index = held if held is not None and held.size >= LAZY_MIN else backend.read()
                # a shared engine is the index itself: catching it up writes it, so only when no other process
                # is writing (that one brings it in step); meanwhile it is read as it is, and caught up later
                with self._writes.try_held() if not backend.lazy else nullcontext(True) as free:
                    if index is not None and not free:
                        index.changed_elsewhere()
                        self._index, self._encoder = index, encoder
                        return index
                    self._catch_up(index, backend, version, encoder)
            return self._index

    def _catch_up(self, index: VectorIndex | None, backend: IndexBackend, version: int, encoder: str) -> None:
        fresh, problem, caught = catch_up(index, version, self.catalog.live_ids, self._usable_vectors,
                                          int(self.catalog.meta("dim")), backend, self.kind)
        fresh.changed_elsewhere()
        self._index, self._version, self._encoder = fresh, version, encoder
        self._unsaved += caught
        if problem and (fresh.size >= LAZY_MIN or not backend.lazy):
            # a large rebuild is saved, not redone per process; a shared engine's rebuild is the index
            self._save_if_free(fresh, version)
        elif problem:  # serve correct results now; `rdm check --repair` saves the rebuild
            self.note = f"{problem}; rebuilt in memory from the DB"
        elif caught and save_due(fresh.size, self._unsaved):
            self._save_if_free(fresh, version)

    def _save_if_free(self, index: VectorIndex, version: int) -> None:
        """Save what a read caught up, unless a writer holds the DB (it saves its own) or the folder is
        read-only: a read never waits for a write."""
        with self._writes.try_held() as mine:
            if mine:
                self._keep(index, version, now=True)

    def _keep(self, index: VectorIndex, version: int, *, changed: int = 0, now: bool = False) -> None:
        """Hold ``index`` as the one of ``version``; save it when due (a large one: every 1% of changes)."""
        self._unsaved = self._unsaved + changed if self._index is index else changed
        if now or save_due(index.size, self._unsaved):
            self.backend.save(index, version)
            self._unsaved = 0
        self._index, self._version = index, version

    def _usable_vectors(self, ids=None):
        """The vectors of ``ids`` that can be searched: one the file lacks or holds damaged stays out of the
        index (and in `rdm check`'s findings) instead of failing every search."""
        return self.catalog.vectors(ids, missing_ok=True)

    def _catalog_version(self) -> int:
        return int(self.catalog.meta("index_version"))
