"""The ingest pipeline: read and decode ahead, embed in batches, store each batch behind.

Three stages overlap so the encoder is rarely idle: a reader thread hashes and decodes ahead, the
calling thread embeds, and a writer thread stores and commits the previous batch (through the
``commit`` function the store passes in, which owns the write order). ``progress(done, total)``
runs on the calling thread (Streamlit needs that) after each commit.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from PIL import Image

from rdm.db.catalog import now
from rdm.db.records import IngestReport, ProgressFn, parse_tags
from rdm.encoders import Encoder
from rdm.errors import BadImage
from rdm.sources import Candidate, IngestItem, decode_image

T = TypeVar("T")


@dataclass(frozen=True)
class Prepared:
    """A candidate that passed decoding and is not in the DB yet."""

    name: str
    data: bytes
    sha: str
    image: Image.Image


@dataclass(frozen=True)
class BatchOptions:
    category: str | None = None
    tags: str | Sequence[str] | None = None
    metadata: Mapping[str, Mapping[str, object]] | None = None  # original file name -> fields

    def fields(self, prep: Prepared, ext: str) -> dict:
        """The catalog row of one prepared image: per-file metadata overrides the batch-wide values."""
        meta = (self.metadata or {}).get(prep.name, {})
        return {"sha256": prep.sha, "filename": prep.name, "ext": ext,
                "category": str(meta.get("category", self.category or "")),
                "tags": json.dumps(list(parse_tags(meta.get("tags", self.tags)))),
                "caption": str(meta.get("caption", "")), "source": str(meta.get("source", "")),
                "licence": str(meta.get("licence", "")), "author": str(meta.get("author", "")),
                "width": prep.image.width, "height": prep.image.height, "added_at": now()}


Commit = Callable[[Sequence[Prepared], np.ndarray, BatchOptions], list[IngestItem]]


def run_pipeline(candidates: Iterable[Candidate | IngestItem], *, known: Callable[[str], int | None],
                 encoder: Encoder, commit: Commit, options: BatchOptions, batch_size: int = 32,
                 progress: ProgressFn | None = None) -> IngestReport:
    """Ingest ``candidates``; ``known(sha)`` is the id of an image already stored with those bytes."""
    candidates = list(candidates)
    total = len(candidates)
    items: list[IngestItem] = []
    batch: list[Prepared] = []
    pending: list[tuple[Future, int]] = []

    def drain(block: bool) -> None:
        while pending and (block or pending[0][0].done()):
            future, done = pending.pop(0)
            items.extend(future.result())  # re-raises a failed commit here
            if progress:
                progress(done, total)

    with ThreadPoolExecutor(1, thread_name_prefix="rdm-ingest-writer") as writer:
        for done, entry in _prefetch(_prepare(candidates, known), depth=2 * batch_size):
            if isinstance(entry, IngestItem):
                items.append(entry)
            else:
                batch.append(entry)
            if len(batch) >= batch_size or (done == total and batch):
                vectors = encoder.encode_images([p.image for p in batch])
                pending.append((writer.submit(commit, batch, vectors, options), done))
                batch = []
            drain(block=len(pending) > 1)  # at most one batch waits on the writer
        drain(block=True)
    if progress:
        progress(total, total)
    return IngestReport(tuple(items))


def embed_all(encoder: Encoder, images: Sequence[Callable[[], Image.Image]], batch_size: int = 32,
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
        except OSError as exc:
            yield done, IngestItem(cand.name, "skipped", f"cannot be read: {exc.strerror or exc}")
            continue
        sha = hashlib.sha256(data).hexdigest()
        existing = known(sha)
        if existing is not None or sha in seen:
            yield done, IngestItem(cand.name, "duplicate", f"same bytes as image {existing}" if existing is not None
                                   else f"same bytes as {seen[sha]} in this batch", existing)
            continue
        try:
            image = decode_image(data, cand.name)
        except BadImage as exc:
            yield done, IngestItem(cand.name, "skipped", str(exc))
            continue
        seen[sha] = cand.name
        yield done, Prepared(cand.name, data, sha, image)


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
