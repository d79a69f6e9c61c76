"""The DB folder's write lock: every change to the vectors or the index holds it, one writer at a time.

SQLite serialises each transaction, but a write is more than one: an ingest commits a batch and then its
index follows; a re-embed switches the vector file and then rebuilds the index. Without one lock around
each whole write, a re-embed could switch away from rows committed while it embedded, or an index saved
from old vectors could land after the new one. The lock is an ``flock`` on ``write.lock`` in the DB folder:
the kernel drops it when its process dies, so a killed writer never leaves it held.

Reads never take it (a read-only folder stays readable); a reader that merely caught its index up saves
it only when the lock is free (``try_held``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rdm.errors import StoreError

LOCK_FILE = "write.lock"

_LOCKS: dict[Path, "WriteLock"] = {}
_LOCKS_GUARD = threading.Lock()


class WriteLock:
    """One folder's lock in this process: reentrant per thread, and shared by every store handle on the
    folder (an ``flock`` belongs to an open file, so two handles in one process would block each other)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self._thread = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Wait for the lock (another process's write finishes first) and hold it."""
        with self._thread:
            self._enter(blocking=True)
            try:
                yield
            finally:
                self._leave()

    @contextmanager
    def try_held(self) -> Iterator[bool]:
        """Hold the lock if it is free now; yields whether it is held (False in a read-only folder too)."""
        if not self._thread.acquire(blocking=False):
            yield False
            return
        try:
            try:
                self._enter(blocking=False)
            except (BlockingIOError, StoreError):
                yield False
                return
            try:
                yield True
            finally:
                self._leave()
        finally:
            self._thread.release()

    def _enter(self, blocking: bool) -> None:
        if self._depth == 0:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot write to the DB at {self.path.parent}: {exc.strerror or exc}"
                                 f"{' (the folder is read-only)' if exc.errno in (errno.EROFS, errno.EACCES) else ''}. "
                                 "Searching and `rdm check` still work; to change the DB, make the folder "
                                 "writable or copy it somewhere writable") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        self._depth += 1

    def _leave(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None


def write_lock(folder: Path) -> WriteLock:
    """The write lock of the DB at ``folder`` (one object per folder in this process)."""
    key = Path(folder).resolve()
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, WriteLock(key))
