"""The ingest pipeline: read and decode ahead, embed in batches, store each batch behind.

Three stages overlap so the encoder is rarely idle: a reader thread hashes and decodes ahead, the
calling thread embeds, and a writer thread stores and commits the previous batch (through the
``commit`` function the store passes in, which owns the write order). ``progress(done, total)``
runs on the calling thread (Streamlit needs that) after each commit.

Memory is bounded in bytes, not in images: the reader stays at most ``READ_AHEAD_BYTES`` ahead, a
batch is cut once it holds ``BATCH_BYTES``, and images are decoded reduced (``DECODE_SIDE``), since
only the embedding and the thumbnail need pixels; the original bytes are stored as they came.
"""

from __future__ import annotations

import hashlib
import io
import json
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from PIL import Image

from rdm.db.copies import perceptual_hash
from rdm.db.blobs import make_thumbnail
from rdm.db.catalog import now
from rdm.db.records import IngestReport, ProgressFn, parse_tags
from rdm.encoders import Encoder
from rdm.errors import BadImage, RDMError
from rdm.common.redact import strip_credentials
from rdm.common.sources import READ_ERRORS, Candidate, IngestItem, decode_image, displayed_size, open_image

T = TypeVar("T")
DECODE_SIDE = 1024  # px: the encoders see 224-384 px and thumbnails are 256 px
# Encoder batches of 8: on a CPU, larger ones mostly add page faults on big activation buffers
# (Pillow's test corpus: batch 8 took 31 s and peaked at 1.36 GB RSS, batch 32 took 63 s and 1.96 GB).
ENCODE_BATCH = 8
READ_AHEAD_BYTES = 64 * 2**20
BATCH_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Prepared:
    """A candidate that passed decoding and is not in the DB yet."""

    name: str
    data: bytes
    sha: str
    image: Image.Image  # decoded reduced, for the encoder
    size: tuple[int, int]  # the original's width and height, as displayed (EXIF orientation applied)
    thumbnail: bytes  # the 256-px JPEG
    phash: str  # perceptual hash of the thumbnail (rdm/db/copies.py)

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.image.width * self.image.height * len(self.image.getbands())


@dataclass(frozen=True)
class BatchOptions:
    category: str | None = None
    tags: str | Sequence[str] | None = None
    metadata: Mapping[str, Mapping[str, object]] | None = None  # original file name -> fields
    who: str = ""  # for the history
    encoder: str = ""  # the encoder the batch's vectors come from (the DB's when the ingest began)

    def fields(self, prep: Prepared, ext: str) -> dict:
        """The catalog row of one prepared image: per-file metadata overrides the batch-wide values."""
        meta = (self.metadata or {}).get(prep.name, {})
        return {"sha256": prep.sha, "filename": prep.name, "ext": ext,
                "category": str(meta.get("category", self.category or "")),
                "tags": json.dumps(list(parse_tags(meta.get("tags", self.tags)))),
                "caption": str(meta.get("caption", "")), "source": strip_credentials(meta.get("source", "")),
                "licence": str(meta.get("licence", "")), "author": str(meta.get("author", "")),
                "width": prep.size[0], "height": prep.size[1], "added_at": now(), "phash": prep.phash}


Commit = Callable[[Sequence[Prepared], np.ndarray, BatchOptions], list[IngestItem]]


def run_pipeline(candidates: Iterable[Candidate | IngestItem], *, known: Callable[[str], int | None],
                 encoder: Encoder | None, commit: Commit, options: BatchOptions, batch_size: int = ENCODE_BATCH,
                 progress: ProgressFn | None = None,
                 vectors: Mapping[str, np.ndarray] | None = None) -> IngestReport:
    """Ingest ``candidates``; ``known(sha)`` is the id of an image already stored with those bytes.
    ``vectors`` (candidate name -> embedding) replaces the encoder: embeddings computed elsewhere."""
    candidates = list(candidates)
    total = len(candidates)
    items: list[IngestItem] = []
    batch: list[Prepared] = []
    batch_bytes = 0
    pending: list[tuple[Future, int]] = []

    def drain(block: bool) -> None:
        while pending and (block or pending[0][0].done()):
            future, done = pending.pop(0)
            items.extend(future.result())  # re-raises a failed commit here
            if progress:
                progress(done, total)

    try:
        with ThreadPoolExecutor(1, thread_name_prefix="rdm-ingest-writer") as writer:
            for done, entry in _prefetch(_prepare(candidates, known), budget=READ_AHEAD_BYTES):
                if isinstance(entry, IngestItem):
                    items.append(entry)
                else:
                    batch.append(entry)
                    batch_bytes += entry.nbytes
                if len(batch) >= batch_size or batch_bytes >= BATCH_BYTES or (done == total and batch):
                    embedded = (np.stack([vectors[p.name] for p in batch]) if vectors is not None
                                else encoder.encode_images([p.image for p in batch]))
                    pending.append((writer.submit(commit, batch, embedded, options), done))
                    batch, batch_bytes = [], 0
                drain(block=len(pending) > 1)  # at most one batch waits on the writer
            drain(block=True)
    except RDMError as exc:  # a batch could not be stored (a full disk): say what was
        items += [i for future, _ in pending if not future.exception() for i in future.result()]
        stored = sum(i.status == "added" for i in items)
        if not stored:
            raise
        raise type(exc)(f"{str(exc).rstrip('.')}. Before it stopped, {stored} image(s) were stored and can be searched; run the same "
                        "ingest again to add the rest (files already stored are skipped as duplicates)") from exc
    if progress:
        progress(total, total)
    return IngestReport(tuple(items))


def embed_all(encoder: Encoder, images: Sequence[Callable[[], Image.Image]], batch_size: int = ENCODE_BATCH,
              progress: ProgressFn | None = None) -> np.ndarray:
    """Every image (each opened when its batch comes) through ``encoder``, in batches."""
    vectors: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        vectors.append(encoder.encode_images([open_image() for open_image in images[start:start + batch_size]]))
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    return np.concatenate(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)


def _prepare(candidates: Sequence[Candidate | IngestItem],
             known: Callable[[str], int | None]) -> Iterator[tuple[int, Prepared | IngestItem]]:
    """Read, hash, dedupe and decode each candidate (runs on the reader thread)."""
    seen: dict[str, str] = {}
    for done, cand in enumerate(candidates, start=1):
        if isinstance(cand, IngestItem):
            yield done, cand
            continue
        try:
            data = cand.read()
        except BadImage as exc:
            yield done, IngestItem(cand.name, "skipped", str(exc))
            continue
        except READ_ERRORS as exc:  # a damaged zip member, an unreadable file: this candidate only
            yield done, IngestItem(cand.name, "skipped", f"cannot be read: {_why(exc)}")
            continue
        sha = hashlib.sha256(data).hexdigest()
        existing = known(sha)
        if existing is not None or sha in seen:
            yield done, IngestItem(cand.name, "duplicate", f"same bytes as image {existing}" if existing is not None
                                   else f"same bytes as {seen[sha]} in this batch", existing)
            continue
        try:
            size = displayed_size(open_image(data, cand.name))
            image = decode_image(data, cand.name, max_side=DECODE_SIDE)
        except BadImage as exc:
            yield done, IngestItem(cand.name, "skipped", str(exc))
            continue
        seen[sha] = cand.name
        thumbnail = make_thumbnail(image)
        with Image.open(io.BytesIO(thumbnail)) as thumb:
            phash = perceptual_hash(thumb)
        yield done, Prepared(cand.name, data, sha, image, size, thumbnail, phash)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"


def _prefetch(items: Iterator[T], budget: int) -> Iterator[T]:
    """Run a generator on a background thread, at most ``budget`` bytes (``nbytes`` of what it
    yields; other items weigh nothing) ahead of the consumer, and always at least one item."""
    buffer: queue.Queue = queue.Queue()
    end = object()
    stop = threading.Event()
    room = threading.Condition()
    ahead = [0]  # bytes produced and not yet taken by the consumer

    def weigh(item) -> int:
        entry = item[1] if isinstance(item, tuple) else item
        return getattr(entry, "nbytes", 0)

    def produce() -> None:
        try:
            for item in items:
                size = weigh(item)
                with room:
                    room.wait_for(lambda: stop.is_set() or ahead[0] == 0 or ahead[0] + size <= budget)
                    if stop.is_set():
                        return
                    ahead[0] += size
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
            with room:
                ahead[0] -= weigh(item)
                room.notify()
            yield item
    finally:
        stop.set()
        with room:
            room.notify()
        thread.join()
