"""``ImageStore``: one DB folder, and the only place that decides the order of writes.

Layout of a DB folder::

    meta.sqlite             images, their vectors, and key/value meta (encoder, versions)   (catalog)
    index.faiss             live vectors only; derived from SQLite, so it can always be rebuilt (index)
                            (or a Milvus collection, ``milvus.db/`` when Milvus Lite: the DB's choice)
    images/ab/<sha256>.jpg  original bytes as uploaded                                        (blobs)
    thumbs/ab/<sha256>.jpg  256-px JPEG thumbnails                                            (blobs)

Durability: files are written (temp + fsync + rename) before the SQLite transaction that
acknowledges them, and the index file is rewritten the same way after it. A process killed at any
point leaves orphan files or a stale index at worst; ``check`` finds both and ``repair`` fixes them
without losing an acknowledged (committed) image.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from rdm.db.catalog import Catalog
from rdm.db.check import run_checks
from rdm.db.index import (LAZY_MIN, IndexBackend, IndexInfo, VectorIndex, backend_settings, catch_up,
                          needs_rebuild, open_backend, save_due)
from rdm.db.ingest import ENCODE_BATCH, BatchOptions, Prepared, embed_all, run_pipeline
from rdm.db.reader import DB_FILE, StoreReader
from rdm.db.records import CheckReport, Hit, ImageRecord, IngestReport, ProgressFn
from rdm.db.search import top_k
from rdm.encoders import Encoder, load_encoder
from rdm.errors import EncoderMismatch, StoreError
from rdm.files import fsync_dir
from rdm.modes import Fusion
from rdm.settings import vector_config
from rdm.sources import Candidate, IngestItem, bytes_sources, iter_sources



class ImageStore(StoreReader):
    """One DB folder. Thread-safe: every call opens its own SQLite connection."""

    def __init__(self, path: Path, encoder: Encoder | None = None):
        super().__init__(path)
        self._encoder = encoder
        self._lock = threading.RLock()
        self._index: VectorIndex | None = None
        self._index_version = -1
        self._unsaved = 0  # changes made to the index since its file was written (see save_due)
        self._index_encoder = ""  # the encoder whose vectors the index in memory holds
        self.index_note = ""  # set when the index file had to be rebuilt on open
        self._backend: IndexBackend | None = None
        self._backend_recorded: tuple[str, str] = ("", "")  # the DB's settings it was opened from

    # -- opening

    @classmethod
    def create(cls, path: str | Path, encoder: Encoder, encoder_reason: str = "",
               vector_backend: str | None = None) -> "ImageStore":
        """A new, empty DB; ``vector_backend`` (faiss | milvus; default RDM_VECTOR_BACKEND, else faiss)
        is kept with it."""
        path = Path(path)
        if (path / DB_FILE).exists():
            raise StoreError(f"a DB already exists at {path}; open it instead, or choose a new folder")
        config = vector_config()
        settings = backend_settings(vector_backend or config.backend, config.milvus_uri)
        path.mkdir(parents=True, exist_ok=True)
        # The empty index first (an engine that cannot be reached stops here), then the SQLite file, built
        # aside and renamed last: if it exists, the DB is complete.
        backend = open_backend(path, settings.get, config.milvus_uri, config.milvus_token)
        backend.save(backend.build(np.zeros(0, np.int64), np.zeros((0, encoder.dim), np.float32), encoder.dim))
        building = path / f".{DB_FILE}.{os.getpid()}.tmp"
        Catalog.build(building, encoder.name, encoder.dim, encoder_reason, settings)
        os.replace(building, path / DB_FILE)
        fsync_dir(path)
        return cls(path, encoder)

    @classmethod
    def open(cls, path: str | Path, encoder: Encoder | None = None) -> "ImageStore":
        """Open a DB; ``encoder`` (optional) must be the one that built it."""
        path = Path(path)
        if not (path / DB_FILE).exists():
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
        name = self.meta("encoder")  # re-read: another process may have run `rdm reindex` meanwhile
        if self._encoder is None or self._encoder.name != name:
            self._encoder = load_encoder(name)
        return self._encoder

    @property
    def encoder_name(self) -> str:
        return self.meta("encoder")

    # -- ingest: files -> one SQLite transaction per batch -> index

    def ingest(self, sources: Iterable[str | Path], **kwargs) -> IngestReport:
        """Ingest files, folders and zip archives; see ``ingest_candidates`` for the options."""
        return self.ingest_candidates(iter_sources(sources), **kwargs)

    def ingest_bytes(self, items: Iterable[tuple[str, bytes]], **kwargs) -> IngestReport:
        """Ingest uploaded (filename, bytes) pairs, zips included (the dashboard's upload)."""
        return self.ingest_candidates(bytes_sources(items), **kwargs)

    def ingest_candidates(self, candidates: Iterable[Candidate | IngestItem], *, category: str | None = None,
                          tags: str | Sequence[str] | None = None,
                          metadata: Mapping[str, Mapping[str, object]] | None = None, batch_size: int = ENCODE_BATCH,
                          progress: ProgressFn | None = None, who: str = "",
                          vectors: Mapping[str, np.ndarray] | None = None) -> IngestReport:
        """Decode, embed in batches, store; ``metadata`` maps an original file name to fields (caption,
        tags, category, source, licence, author) that override the batch-wide ``category``/``tags``;
        ``vectors`` (file name -> normalised embedding from this DB's encoder) skips the encoder."""
        return run_pipeline(candidates, known=self.catalog.id_for_sha,
                            encoder=None if vectors is not None else self.encoder,
                            commit=self._commit_batch, options=BatchOptions(category, tags, metadata, who),
                            batch_size=batch_size, progress=progress, vectors=vectors)

    def _commit_batch(self, batch: Sequence[Prepared], vectors: np.ndarray,
                      options: BatchOptions) -> list[IngestItem]:
        # 1. Files before rows: a crash now leaves orphans, never rows without files.
        rows = [(options.fields(prep, self.blobs.write(prep.sha, prep.data, prep.thumbnail)), vec)
                for prep, vec in zip(batch, vectors)]
        with self._lock:
            index = self._loaded_index()  # before the commit, or a reload would double-add the batch
            ids, version = self.catalog.insert(rows, options.who)  # 2. one transaction acknowledges the batch
            self._follow(index, version, lambda i: i.add(ids, vectors), len(ids))  # 3. the index follows
        return [IngestItem(prep.name, "added", "", i) for prep, i in zip(batch, ids)]

    # -- curation

    def edit(self, image_id: int, *, category: str | None = None, tags: str | Sequence[str] | None = None,
             caption: str | None = None, who: str = "") -> ImageRecord:
        return self.edit_many([image_id], category=category, tags=tags, caption=caption, who=who)[0]

    def edit_many(self, ids: Sequence[int], *, category: str | None = None,
                  tags: str | Sequence[str] | None = None, caption: str | None = None,
                  add_tags: str | Sequence[str] | None = None, who: str = "") -> list[ImageRecord]:
        """Set category/tags/caption (and/or add tags) on many images in one transaction (one history batch)."""
        self.catalog.require(ids)
        self.catalog.edit_many(ids, category=category, tags=tags, caption=caption, add_tags=add_tags, who=who)
        return self.records(include_deleted=True, ids=list(ids))

    def delete(self, ids: int | Sequence[int], who: str = "") -> int:  # soft: restorable; how many changed
        return self._set_deleted(ids, True, who)

    def restore(self, ids: int | Sequence[int], who: str = "") -> int:
        return self._set_deleted(ids, False, who)

    def _set_deleted(self, ids: int | Sequence[int], deleted: bool, who: str) -> int:
        ids = [ids] if isinstance(ids, int) else list(ids)
        self.catalog.require(ids)
        with self._lock:
            index = self._loaded_index()
            changed, version = self.catalog.set_deleted(ids, deleted, who)
            self._show_hide(index, version, changed if deleted else [], [] if deleted else changed)
        return len(changed)

    def undo(self, change_id: int, *, whole_batch: bool = False, who: str = "") -> int:
        """Revert a change, or the whole bulk action it was part of; returns how many were reverted."""
        with self._lock:
            index = self._loaded_index()
            done, version = self.catalog.revert(change_id, whole_batch=whole_batch, who=who)
            self._show_hide(index, version, done.hidden, done.shown)
        return len(done.changes)

    def _show_hide(self, index: VectorIndex, version: int, hidden: Sequence[int], shown: Sequence[int]) -> None:
        def change(i: VectorIndex) -> None:
            if hidden:
                i.remove(hidden)
            if shown:
                i.add(shown, self.catalog.vectors(shown)[1])

        if hidden or shown:
            self._follow(index, version, change, len(hidden) + len(shown))

    def purge(self, ids: int | Sequence[int], who: str = "") -> int:
        """Hard delete: rows, vectors and files are gone for good (not undoable)."""
        ids = [ids] if isinstance(ids, int) else list(ids)
        self.catalog.require(ids)
        records = self.records(include_deleted=True, ids=ids)
        with self._lock:
            index = self._loaded_index()
            self._follow(index, self.catalog.remove(ids, who), lambda i: i.remove(ids), len(ids))
        for rec in records:  # after the commit: a crash here leaves orphans that check removes
            self.blobs.remove(rec.sha256, rec.ext)
        return len(records)

    def reindex(self, encoder: Encoder, *, reason: str = "", batch_size: int = ENCODE_BATCH,
                progress: ProgressFn | None = None) -> int:
        """Re-embed every image (deleted ones too) and switch encoders, in one transaction."""
        records = self.records(include_deleted=True)
        all_vecs = embed_all(encoder, [lambda r=r: self.open_image(r.id) for r in records], batch_size, progress)
        with self._lock:
            self.catalog.switch_encoder([r.id for r in records], all_vecs, encoder.name, encoder.dim,
                                        reason or f"re-embedded with {encoder.name} by `rdm reindex`")
            self._encoder = encoder
            self.rebuild_index()
        return len(records)

    # -- the vector index

    @property
    def index_backend(self) -> IndexBackend:
        """Where the index lives (FAISS file or Milvus collection), as the DB recorded when it was created."""
        recorded = (self.catalog.setting("vector_backend", "faiss"), self.catalog.setting("milvus_collection", ""))
        if self._backend is None or recorded != self._backend_recorded:  # first use, or the DB moved engines
            config = vector_config()
            self._backend = open_backend(self.path, self.catalog.setting, config.milvus_uri, config.milvus_token)
            self._backend_recorded, self._index = recorded, None
        return self._backend

    def read_index_file(self) -> VectorIndex | None:
        return self.index_backend.read()

    @property
    def index_kind(self) -> str:
        """auto (flat, then IVF or HNSW from IVF_MIN vectors), flat, ivf or hnsw: the DB keeps the choice."""
        return self.catalog.setting("index_kind", "auto")

    def rebuild_index(self, kind: str | None = None, backend: str | None = None) -> IndexInfo:
        """Rebuild the index from the catalog's live vectors and save it; ``kind`` is kept for later, and
        ``backend`` (faiss | milvus; RDM_MILVUS_URI says which server) moves the DB's index to that engine,
        recorded only once the new index is built (a failure leaves the DB on its old one)."""
        with self._lock:
            target, choices = self.index_backend, {}
            if backend is not None and backend != target.name:
                config = vector_config()
                choices = backend_settings(backend, config.milvus_uri)
                target = open_backend(self.path, lambda key, default: choices.get(key, default), config.milvus_uri,
                                      config.milvus_token)
            kind = kind or self.index_kind
            if kind not in target.kinds:
                raise StoreError(f"unknown index kind {kind!r} for the {target.name} backend: "
                                 f"use one of {', '.join(target.kinds)}")
            version = self.index_version  # read first: a commit landing meanwhile makes the tag older, never newer
            ids, vecs = self.catalog.vectors()
            index = target.build(ids, vecs, int(self.meta("dim")), kind)
            self.catalog.set_settings({**choices, "index_kind": kind})
            self._write_index(index, version, now=True)  # saved by the backend now recorded
            self.index_note = ""
            return index.info

    @property
    def index_info(self) -> IndexInfo:
        """The index in use: its kind and, for IVF or HNSW, its recall@10 measured when it was built."""
        index = self._loaded_index()
        return replace(index.info, vectors=index.size) if index.info.kind == "flat" else index.info  # nothing trained

    def _follow(self, index: VectorIndex, version: int, change, changed: int) -> None:
        """After our commit that made ``version``: ``change`` the index (``changed`` vectors) if it held the
        version just before, else (another process committed in between) rebuild it from the catalog;
        save it when due. An index that outgrew its kind (flat past IVF_MIN, IVF past twice its
        training) is rebuilt."""
        if self._index_version == version - 1:
            change(index)
            if not needs_rebuild(index, self.index_kind, self.index_backend.large_kind):
                return self._write_index(index, version, changed=changed)
        self.rebuild_index()

    def _write_index(self, index: VectorIndex, version: int, *, changed: int = 0, now: bool = False) -> None:
        """Keep ``index`` as the one of ``version``; save it when due (a large one: every 1% of changes)."""
        self._unsaved = self._unsaved + changed if self._index is index else changed
        if now or save_due(index.size, self._unsaved):
            self.index_backend.save(index, version)
            self._unsaved = 0
        self._index, self._index_version = index, version

    def save_index(self) -> None:
        """Write the index file now, with every change this process made (it catches up otherwise)."""
        with self._lock:
            self._write_index(self._loaded_index(), self._index_version, now=True)

    def _loaded_index(self) -> VectorIndex:
        """The index, reloaded when another process changed the DB, caught up or rebuilt if stale."""
        with self._lock:
            backend, version, encoder = self.index_backend, self.index_version, self.encoder_name
            if self._index is None or self._index_version != version:
                # a large index in memory is caught up with the catalog; a small one is read again from its
                # file (always saved), as is any index on the first use here or after an encoder switch
                held = self._index if self._index_encoder == encoder else None
                index = held if held is not None and held.size >= LAZY_MIN else self.read_index_file()
                fresh, problem, caught = catch_up(index, version, self.catalog.live_ids, self.catalog.vectors,
                                                  int(self.meta("dim")), backend, self.index_kind)
                self._index, self._index_version, self._index_encoder = fresh, version, encoder
                self._unsaved += caught
                if problem and (fresh.size >= LAZY_MIN or not backend.lazy):
                    # a large rebuild is saved, not redone per process; a shared engine's rebuild is the index
                    self._write_index(fresh, version, now=True)
                elif problem:  # serve correct results now; `rdm check --repair` saves the rebuild
                    self.index_note = f"{problem}; rebuilt in memory from the DB"
                elif caught and save_due(fresh.size, self._unsaved):
                    self._write_index(fresh, version, now=True)
            return self._index

    # -- search

    def search_vectors(self, queries: np.ndarray, k: int = 10, *, texts: Sequence[str] | None = None,
                       fusion: Fusion = Fusion(), exclude: Sequence[int] = (),
                       **filters: str | None) -> list[list[Hit]]:
        """Top-k live images per query vector, scored by ``fusion`` when ``texts`` (the queries' words)
        are given, else by cosine; filtered by ``category``, ``tag``, ``contains``."""
        return top_k(self._loaded_index(), self.catalog, queries, k, texts=texts, fusion=fusion,
                     exclude=exclude, **filters)

    def search_texts(self, texts: Sequence[str], k: int = 10, *, fusion: Fusion = Fusion(),
                     **filters: str | None) -> list[list[Hit]]:
        """Top-k per query text: image embedding and/or curated text, as ``fusion`` says."""
        texts = [" ".join(t.split()) for t in texts]
        if not all(texts):
            raise StoreError("the search text is empty: describe what the images should show")
        # Encoded in text-only search too: each hit still shows its cosine beside its text match.
        return self.search_vectors(self.encoder.encode_texts(texts), k, texts=texts, fusion=fusion, **filters)

    def search(self, text: str, k: int = 10, *, fusion: Fusion = Fusion(), **filters: str | None) -> list[Hit]:
        return self.search_texts([text], k, fusion=fusion, **filters)[0]

    def within(self, queries: np.ndarray, threshold: float) -> list[np.ndarray]:
        """Per query vector, the live images' ids with cosine >= ``threshold``, through the index."""
        return self._loaded_index().within(queries, threshold)

    def similar(self, image_id: int, k: int = 10, **filters: str | None) -> list[Hit]:
        """Images most like ``image_id`` (itself excluded)."""
        self.catalog.require([image_id])
        return self.search_vectors(self.catalog.vectors([image_id])[1], k, exclude=[int(image_id)], **filters)[0]

    # -- consistency

    def check(self, repair: bool = False) -> CheckReport:
        """Find (and with ``repair`` fix) every way files, rows, vectors and the index can disagree."""
        with self._lock:
            return run_checks(self, repair)
