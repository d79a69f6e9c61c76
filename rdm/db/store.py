"""``ImageStore``: one DB folder, and the only place that decides the order of writes.

Layout of a DB folder::

    meta.sqlite             images, which have a vector, key/value meta (encoder, versions)  (catalog)
    vectors.f32             every vector once, row = image id, memory-mapped              (vectorfile)
    index.faiss             live vectors only; derived from SQLite, so it can always be rebuilt (index)
                            (or a Milvus collection, ``milvus.db/`` when Milvus Lite: the DB's choice)
    images/ab/<sha256>.jpg  original bytes as uploaded                                        (blobs)
    thumbs/ab/<sha256>.jpg  256-px JPEG thumbnails                                            (blobs)
    write.lock              held (flock) by whichever process is changing the DB          (writelock)

Writers: every change to the rows, vectors or index holds the folder's write lock (``writelock``) from
before its commit until its index has followed, so a re-embed switches with every committed row and an
ingest commits only vectors of the DB's encoder of the moment; reads never take it.

Durability: files are written (temp + fsync + rename; a vector's row: write + fsync) before the SQLite
transaction that acknowledges them, and the index follows it (``IndexKeeper``: saved when due, caught up
by others). A process killed at any point leaves orphan files or a stale index at worst; ``check`` finds
both and ``repair`` fixes them without losing an acknowledged (committed) image.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from rdm.db.catalog import Catalog
from rdm.db.check import run_checks
from rdm.db.index import IndexBackend, IndexInfo, VectorIndex, backend_settings, open_backend
from rdm.db.intake import ENCODE_BATCH, BatchOptions, Prepared, embed_all, run_pipeline
from rdm.db.keeper import IndexKeeper
from rdm.db.writelock import write_lock
from rdm.db.reader import DB_FILE, StoreReader
from rdm.db.records import CheckReport, Hit, ImageRecord, IngestReport, ProgressFn
from rdm.db.search import top_k
from rdm.encoders import Encoder, load_encoder
from rdm.errors import EncoderMismatch, StoreError
from rdm.common.files import fsync_dir
from rdm.db.fusion import Fusion
from rdm.settings import vector_config
from rdm.common.sources import Candidate, IngestItem, bytes_sources, iter_sources



class ImageStore(StoreReader):
    """One DB folder. Thread-safe: every call opens its own SQLite connection."""

    def __init__(self, path: Path, encoder: Encoder | None = None):
        super().__init__(path)
        self._encoder = encoder
        self._writes = write_lock(self.path)
        self._keeper = IndexKeeper(self.path, self.catalog, self._writes)

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
        backend = open_backend(path, settings.get)
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
        encoder = self.encoder if vectors is None else None  # embeddings brought along need no model here
        return run_pipeline(candidates, known=self.catalog.id_for_sha, encoder=encoder, commit=self._commit_batch,
                            options=BatchOptions(category, tags, metadata, who,
                                                 encoder.name if encoder else self.encoder_name),
                            batch_size=batch_size, progress=progress, vectors=vectors)

    def _commit_batch(self, batch: Sequence[Prepared], vectors: np.ndarray,
                      options: BatchOptions) -> list[IngestItem]:
        # 1. Files before rows: a crash now leaves orphans, never rows without files.
        fields = [options.fields(prep, self.blobs.write(prep.sha, prep.data, prep.thumbnail)) for prep in batch]
        with self._writes.held():
            if self.encoder_name != options.encoder:  # `rdm reindex` switched encoders since this batch was embedded
                vectors = self.encoder.encode_images([prep.image for prep in batch])
            index = self._keeper.current()  # before the commit, or a reload would double-add the batch
            # 2. one transaction acknowledges the batch; a file another ingest stored meanwhile is not stored twice
            ids, fresh, version = self.catalog.insert(list(zip(fields, vectors)), options.who)
            added = [i for i, new in zip(ids, fresh) if new]
            if added:  # 3. the index follows
                self._keeper.follow(index, version, lambda i: i.add(added, vectors[np.array(fresh)]), len(added))
        return [IngestItem(prep.name, "added", "", i) if new else
                IngestItem(prep.name, "duplicate", f"same bytes as image {i} (stored by another ingest meanwhile)", i)
                for prep, i, new in zip(batch, ids, fresh)]

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
        with self._writes.held():
            index = self._keeper.current()
            changed, version = self.catalog.set_deleted(ids, deleted, who)
            self._show_hide(index, version, changed if deleted else [], [] if deleted else changed)
        return len(changed)

    def undo(self, change_id: int, *, whole_batch: bool = False, who: str = "") -> int:
        """Revert a change, or the whole bulk action it was part of; returns how many were reverted."""
        with self._writes.held():
            index = self._keeper.current()
            done, version = self.catalog.revert(change_id, whole_batch=whole_batch, who=who)
            self._show_hide(index, version, done.hidden, done.shown)
        return len(done.changes)

    def _show_hide(self, index: VectorIndex, version: int, hidden: Sequence[int], shown: Sequence[int]) -> None:
        def change(i: VectorIndex) -> None:
            if hidden:
                i.remove(hidden)
            if shown:  # those with a usable vector (`rdm check --repair` re-embeds the others)
                i.add(*self.catalog.vectors(shown, missing_ok=True))

        if hidden or shown:
            self._keeper.follow(index, version, change, len(hidden) + len(shown))

    def purge(self, ids: int | Sequence[int], who: str = "") -> int:
        """Hard delete: rows, vectors and files are gone for good (not undoable)."""
        ids = [ids] if isinstance(ids, int) else list(ids)
        self.catalog.require(ids)
        # named before any change: a row whose names point out of the DB is refused here
        files = [self.blobs.files_of(rec.sha256, rec.ext) for rec in self.records(include_deleted=True, ids=ids)]
        with self._writes.held():
            index = self._keeper.current()
            self._keeper.follow(index, self.catalog.remove(ids, who), lambda i: i.remove(ids), len(ids))
        for original, thumbnail in files:  # after the commit: a crash here leaves orphans that check removes
            original.unlink(missing_ok=True)
            thumbnail.unlink(missing_ok=True)
        return len(files)

    def reindex(self, encoder: Encoder, *, reason: str = "", batch_size: int = ENCODE_BATCH,
                progress: ProgressFn | None = None) -> int:
        """Re-embed every image (deleted ones too) and switch encoders, in one transaction. Images stored while
        it embeds are embedded too: the last few under the write lock, so the switch leaves none behind."""
        embedded: dict[int, np.ndarray] = {}

        def embed_new(report: ProgressFn | None = None) -> int:
            new = [r.id for r in self.records(include_deleted=True) if r.id not in embedded]
            vectors = embed_all(encoder, [lambda i=i: self.open_image(i) for i in new], batch_size, report)
            embedded.update(zip(new, vectors))
            return len(new)

        embed_new(progress)
        while embed_new() > batch_size:  # others keep writing: catch up without holding them up
            pass
        with self._writes.held():
            embed_new()  # the last ones, while writers wait
            ids = [r.id for r in self.records(include_deleted=True)]  # an image purged meanwhile is left out
            vectors = np.stack([embedded[i] for i in ids]) if ids else np.zeros((0, encoder.dim), np.float32)
            self.catalog.switch_encoder(ids, vectors, encoder.name, encoder.dim,
                                        reason or f"re-embedded with {encoder.name} by `rdm reindex`")
            self._encoder = encoder
            self._keeper.rebuild()
        return len(ids)

    # -- the vector index (kept by ``IndexKeeper``)

    @property
    def index_backend(self) -> IndexBackend:
        """Where the index lives (FAISS file or Milvus collection), as the DB records it."""
        return self._keeper.backend

    def read_index_file(self) -> VectorIndex | None:
        """The index as saved (a check compares it with the catalog), not as this process holds it."""
        return self._keeper.backend.read()

    @property
    def index_kind(self) -> str:
        return self._keeper.kind

    def rebuild_index(self, kind: str | None = None, backend: str | None = None) -> IndexInfo:
        """Rebuild the index from the catalog (as ``kind``, kept; moved to ``backend``); see IndexKeeper.rebuild.
        Refused while live images lack a usable vector (`rdm check --repair` first)."""
        return self._keeper.rebuild(kind, backend, complete=True)

    @property
    def index_info(self) -> IndexInfo:
        return self._keeper.info

    @property
    def index_note(self) -> str:  # set when the saved index had to be rebuilt in memory on open
        return self._keeper.note

    def settle_index(self) -> None:
        """Wait until the index is as fast as it gets: a large FAISS file opens mapped and is copied into
        memory in the background (searches answer meanwhile, slower under a filter)."""
        self._keeper.current().settle()

    def save_index(self) -> None:
        """Write the index now, with every change this process made (another process catches up otherwise)."""
        self._keeper.save()

    # -- search

    def search_vectors(self, queries: np.ndarray, k: int = 10, *, texts: Sequence[str] | None = None,
                       fusion: Fusion = Fusion(), exclude: Sequence[int] = (),
                       **filters: str | None) -> list[list[Hit]]:
        """Top-k live images per query vector, scored by ``fusion`` when ``texts`` (the queries' words)
        are given, else by cosine; filtered by ``category``, ``tag``, ``contains``."""
        index = self._keeper.current()
        # an empty index over live images: say why rather than answer "no hits" (a shared engine may show a new
        # collection's rows a moment late, so the vector file is what decides)
        if not index.size and not (vectors := self.catalog.vector_file()).rows and (live := len(self.catalog.live_ids())):
            raise StoreError(f"the DB at {self.path} lists {live} live image(s) but its vector file {vectors.path.name} "
                             "is missing or empty, so no search can find them: run `rdm check --repair`, which "
                             "re-embeds them")
        return top_k(index, self.catalog, queries, k, texts=texts, fusion=fusion, exclude=exclude, **filters)

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

    def nearest(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosines, ids) of the ``k`` live images nearest each query vector, straight from the index (ids -1
        where fewer): no records are read, for work over the whole DB such as look-alike groups."""
        return self._keeper.current().search(np.atleast_2d(np.asarray(queries, np.float32)), k)

    def within(self, queries: np.ndarray, threshold: float) -> list[np.ndarray]:
        """Per query vector, the live images' ids with cosine >= ``threshold``, through the index."""
        return self._keeper.current().within(queries, threshold)

    def similar(self, image_id: int, k: int = 10, **filters: str | None) -> list[Hit]:
        """Images most like ``image_id`` (itself excluded)."""
        self.catalog.require([image_id])
        return self.search_vectors(self.catalog.vectors([image_id])[1], k, exclude=[int(image_id)], **filters)[0]

    # -- consistency

    def check(self, repair: bool = False) -> CheckReport:
        """Find (and with ``repair`` fix) every way files, rows, vectors and the index can disagree."""
        with self._writes.held() if repair else nullcontext():  # a check alone is a read
            return run_checks(self, repair)
