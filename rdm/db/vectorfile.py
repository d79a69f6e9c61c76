"""The DB's vectors, stored once: a file of float32 rows, row ``i`` holding image ``i``'s vector (ids are
never reused, so a row is never shared), memory-mapped for reading.

SQLite's ``vectors`` table lists which images have a row; the catalog writes a row (and fsyncs it) inside
the transaction that acknowledges it, before the commit, so a committed id always finds its row and a
rolled-back one leaves only bytes no row refers to. Readers in other processes map the file again when
it has grown past what they mapped. The file opens in no time whatever its size, a million 512-d rows
are 2 GB read straight from the page cache, and the index is built from it without a blob per row.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from rdm.errors import StoreError
from rdm.common.files import fsync_dir

log = logging.getLogger(__name__)

VECTOR_FILE = "vectors.f32"
VECTOR_NAME = re.compile(r"vectors(-\d+)?\.f32")  # the names a DB gives its vector files (a re-embed numbers them)
NORM_TOLERANCE = 1e-4  # a normalised float32 vector is within ~1e-6 of unit length; a zeroed component of 1/sqrt(512) moves it 1e-3
SCAN_ROWS = 65_536  # rows per chunk when a whole file is checked
WRITE_BYTES = 64 << 20  # per write call: Linux writes at most ~2 GB in one, and a full disk writes short


class VectorFile:
    """One DB's ``vectors*.f32`` of ``dim``-d rows."""

    def __init__(self, path: Path, dim: int):
        self.path = Path(path)
        self.dim = int(dim)
        self.row_bytes = 4 * self.dim
        self._mapped: np.ndarray | None = None  # the rows mapped so far (the file may have grown since)
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        """Rows the file holds now (an id at or past this has none)."""
        try:
            return self.path.stat().st_size // self.row_bytes
        except FileNotFoundError:
            return 0

    def write(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Rows ``ids`` set to ``vectors``, on disk when this returns; each run of consecutive ids (an ingest
        batch is one) is written in one go."""
        ids = np.asarray(ids, np.int64)
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(len(ids), self.dim)
        if not len(ids):
            return
        order = np.argsort(ids, kind="stable")
        ids, vectors = ids[order], vectors[order]
        starts = np.flatnonzero(np.diff(ids, prepend=ids[0] - 2) != 1)  # where a run of consecutive ids begins
        new = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                for begin, end in zip(starts, [*starts[1:], len(ids)]):
                    _write_all(fd, memoryview(vectors[begin:end]).cast("B"), int(ids[begin]) * self.row_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                fsync_dir(self.path.parent)
        except OSError as exc:  # the caller's transaction rolls back: nothing of this change is kept
            raise StoreError(f"could not write {len(ids)} vector(s) to {self.path}: {exc.strerror or exc}. "
                             "Nothing of this change was stored; free disk space (or fix the folder's "
                             "permissions) and try again") from exc

    def clear(self, ids: Sequence[int]) -> None:
        """Rows ``ids`` zeroed (an image purged for good leaves no vector behind); rows past the end stay so."""
        ids = [i for i in np.asarray(ids, np.int64).tolist() if i < self.rows]
        try:
            self.write(ids, np.zeros((len(ids), self.dim), np.float32))
        except StoreError:  # after the purge's commit: the rows are unlisted, so unread; only not zeroed
            log.warning("the vectors of purged image(s) %s could not be zeroed in %s", ids, self.path, exc_info=True)

    def read(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The rows of ``ids`` (a copy), zero where the file ends before a row."""
        ids = np.asarray(ids, np.int64)
        out = np.zeros((len(ids), self.dim), np.float32)
        if not len(ids):
            return out
        mapped = self._rows_for(int(ids.max()))
        inside = ids < len(mapped)
        out[inside] = mapped[ids[inside]]
        return out

    def _rows_for(self, last: int) -> np.ndarray:
        """A mapping that reaches row ``last`` if the file does (mapped again when it grew), and never past the
        file's end: a file cut short under this process (damage, another tool) is mapped again at its new
        size before any read, since touching a mapped page the file no longer has kills the process (SIGBUS)."""
        rows = self.rows  # one stat per read
        mapped = self._mapped
        if mapped is not None and len(mapped) <= rows and (last < len(mapped) or len(mapped) == rows):
            return mapped
        with self._lock:
            if self._mapped is None or len(self._mapped) != rows:
                if self._mapped is not None and len(self._mapped) > rows:
                    log.warning("%s shrank from %d to %d rows: the rows past its end read as missing "
                                "(`rdm check --repair` re-embeds them)", self.path, len(self._mapped), rows)
                self._mapped = (np.memmap(self.path, np.float32, "r", shape=(rows, self.dim)) if rows
                                else np.zeros((0, self.dim), np.float32))
            return self._mapped

    def unusable(self, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` whose row is missing, zero or not finite: what `rdm check` re-embeds."""
        ids = np.asarray(ids, np.int64)
        bad = []
        for start in range(0, len(ids), SCAN_ROWS):
            part = ids[start:start + SCAN_ROWS]
            bad += part[~usable(self.read(part))].tolist()
        return bad

    @classmethod
    def write_new(cls, path: Path, dim: int, ids: Sequence[int], vectors: np.ndarray) -> "VectorFile":
        """A file at ``path`` (replaced if there) holding only these rows, written aside and renamed."""
        aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        aside.unlink(missing_ok=True)
        try:
            cls(aside, dim).write(ids, vectors)
            aside.touch()  # an empty DB's file too
            os.replace(aside, path)
        except BaseException:  # a full disk: no half-written file left behind
            aside.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return cls(path, dim)


def vector_path(folder: Path, name: str) -> Path:
    """The vector file ``name`` (as the DB's meta says) in the DB ``folder``; any other name is refused: a path
    read from a DB's own file is never followed out of it (a tampered DB must not make a repair or a re-embed
    write or delete a file elsewhere)."""
    if not isinstance(name, str) or not VECTOR_NAME.fullmatch(name):
        raise StoreError(f"the DB at {folder} names its vector file {name!r}, which is not a vector file in the DB "
                         "folder (the DB was damaged or tampered with): run `rdm check --repair`, which re-embeds "
                         "its images into a new vector file")
    return folder / name


def usable(rows: np.ndarray) -> np.ndarray:
    """Per row, whether it can be searched: stored vectors are unit length, so a row past the file's end (zero),
    a damaged one (not finite, or scaled: it would top every search) or one flipped a bit is not."""
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    return np.isfinite(norms) & (np.abs(norms - 1.0) <= NORM_TOLERANCE)


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    """All of ``data`` at ``offset``, in bounded calls, each written short retried from where it stopped."""
    done = 0
    while done < len(data):
        wrote = os.pwrite(fd, data[done:done + WRITE_BYTES], offset + done)
        if wrote <= 0:
            raise OSError(errno.ENOSPC, "no space left on device (a write stopped short)")
        done += wrote
