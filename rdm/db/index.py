"""The vector index behind the DB: a small interface, and FAISS as its backend.

The index holds the live images' vectors under their SQLite ids and is derived data: it can
always be rebuilt from the catalog. ``VectorIndex`` is what the store needs from a backend (add,
remove, search with an allow-list, the ids it holds, persist); ``FaissIndex`` implements it with an
exact inner-product index (vectors are L2-normalised, so scores are cosines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import faiss
import numpy as np

from rdm.files import atomic_write


class VectorIndex(Protocol):
    dim: int

    @property
    def size(self) -> int: ...

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None: ...

    def remove(self, ids: Sequence[int]) -> None: ...

    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def ids(self) -> np.ndarray: ...

    def persist(self, path: Path) -> None: ...


class FaissIndex:
    """A FAISS ``IndexIDMap2`` over a flat inner-product index."""

    def __init__(self, index: faiss.Index):
        self._index = index
        self.dim = int(index.d)

    @classmethod
    def empty(cls, dim: int) -> "FaissIndex":
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(int(dim))))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int) -> "FaissIndex":
        index = cls.empty(dim)
        if len(ids):
            index.add(ids, vectors)
        return index

    @classmethod
    def read(cls, path: Path) -> "FaissIndex | None":
        """The index saved at ``path``; None when it is missing or unreadable (then rebuild it)."""
        try:
            return cls(faiss.deserialize_index(np.fromfile(path, dtype=np.uint8)))
        except Exception:  # noqa: BLE001 - FAISS raises RuntimeError, numpy OSError/ValueError: all mean "rebuild"
            return None

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        self._index.add_with_ids(np.asarray(vectors, np.float32), np.asarray(ids, np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        self._index.remove_ids(np.asarray(ids, np.int64))

    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) per query, ids -1 where fewer than ``k`` match; ``allowed`` restricts the ids."""
        params = None
        if allowed is not None:
            params = self._params(bitmap_selector(allowed))
        return self._index.search(np.asarray(queries, np.float32), int(k), params=params)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map) if self.size else np.zeros(0, np.int64)

    def persist(self, path: Path) -> None:
        atomic_write(path, faiss.serialize_index(self._index).tobytes())


def bitmap_selector(ids: Sequence[int] | np.ndarray) -> "faiss.IDSelectorBitmap":
    """A selector of ``ids`` as one bit per id (125 kB for a million ids, built in numpy): FAISS's batch
    selector hashed every allowed id on every query (16 ms for 99k ids)."""
    ids = np.asarray(ids, np.int64)
    bits = np.zeros(int(ids.max()) + 1 if len(ids) else 1, np.bool_)
    bits[ids] = True
    packed = np.packbits(bits, bitorder="little")  # FAISS reads bit i at byte i >> 3, position i & 7
    selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(packed))
    selector.keep_alive = packed  # the selector points into this array
    return selector


def index_problem(index: VectorIndex | None, live_ids: np.ndarray, dim: int) -> str:
    """Why ``index`` does not hold exactly the live vectors ('' if it does)."""
    if index is None:
        return "FAISS index file is missing or unreadable"
    if index.dim != dim:
        return f"FAISS index has dimension {index.dim}, the DB's encoder has {dim}"
    indexed = np.sort(index.ids())
    if not np.array_equal(np.sort(live_ids), indexed):
        missing = len(np.setdiff1d(live_ids, indexed))
        extra = len(np.setdiff1d(indexed, live_ids))
        dupes = len(indexed) - len(np.unique(indexed))
        return (f"FAISS index is out of step with the DB ({missing} live image(s) missing, "
                f"{extra} extra, {dupes} duplicated)")
    return ""


def checked_index(index: VectorIndex | None, live_ids: np.ndarray, live_vectors: np.ndarray,
                  dim: int) -> tuple[VectorIndex, str]:
    """``index`` if it holds exactly the live vectors, else one rebuilt from them, and why."""
    problem = index_problem(index, live_ids, dim)
    return (FaissIndex.build(live_ids, live_vectors, dim) if problem else index), problem
