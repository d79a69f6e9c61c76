"""The FAISS backend: the index as a file in the DB folder (``index.faiss``), its kind fitting the size:
exact (flat) while a scan is fast enough, an inverted file (IVF-Flat) from ``IVF_MIN`` vectors, with the
number of lists probed chosen on a sample so that recall@10 against exact search reaches
``TARGET_RECALL``; what was built and the recall measured are saved beside it (``IndexInfo``).
HNSW is not offered here: FAISS's HNSW cannot remove a vector, and every delete would rebuild it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from rdm.db.index.base import TRAIN_PER_LIST, IndexInfo, ivf_lists, large, tune
from rdm.files import atomic_write

NPROBES = (4, 8, 16, 32, 64, 128, 256)


class FaissIndex:
    """A FAISS ``IndexIDMap2`` over a flat inner-product index, or an ``IndexIVFFlat`` (ids native)."""

    def __init__(self, index: faiss.Index, info: IndexInfo | None = None):
        self._index = index
        self.dim = int(index.d)
        self.ivf = None if isinstance(index, faiss.IndexIDMap2) else faiss.try_extract_index_ivf(index)
        self.info = info or (IndexInfo("ivf", int(index.ntotal), int(self.ivf.nlist), int(self.ivf.nprobe),
                                       None, 0, None)
                             if self.ivf is not None else IndexInfo("flat", int(index.ntotal)))

    @classmethod
    def empty(cls, dim: int) -> "FaissIndex":
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(int(dim))))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int, kind: str = "auto") -> "FaissIndex":
        """The index of ``kind`` (``auto``: by size) over these vectors."""
        if kind not in FaissBackend.kinds:
            raise ValueError(f"unknown index kind {kind!r}: one of {', '.join(FaissBackend.kinds)}")
        if large(kind, len(ids)):
            return cls._ivf(np.asarray(ids, np.int64), np.asarray(vectors, np.float32), int(dim))
        index = cls.empty(dim)
        if len(ids):
            index.add(ids, vectors)
        index.info = IndexInfo("flat", len(ids))
        return index

    @classmethod
    def _ivf(cls, ids: np.ndarray, vectors: np.ndarray, dim: int, seed: int = 0) -> "FaissIndex":
        # 1. the lists, trained on a sample
        n, nlist = len(ids), ivf_lists(len(ids))
        rng = np.random.default_rng(seed)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[rng.choice(n, min(n, nlist * TRAIN_PER_LIST * 2), replace=False)])
        index.add_with_ids(vectors, ids)
        # 2. the fewest probes that find what exact search finds, with and without a filter
        made = cls(index)

        def search_at(nprobe: int, queries: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
            index.nprobe = nprobe
            return made.search(queries, 10, allowed)[1]

        nprobe, recall, filtered, sample = tune(ids, vectors, dim, sorted({min(p, nlist) for p in NPROBES}),
                                                search_at, seed)
        index.nprobe = nprobe
        return cls(index, IndexInfo("ivf", n, nlist, nprobe, recall, sample, filtered))

    @classmethod
    def read(cls, path: Path) -> "FaissIndex | None":
        """The index saved at ``path``; None when it is missing or unreadable (then rebuild it)."""
        try:
            index = faiss.read_index(str(path))
        except Exception:  # noqa: BLE001 - FAISS raises RuntimeError for a missing or damaged file: "rebuild"
            return None
        try:
            info = IndexInfo(**json.loads(info_file(path).read_text()))
        except (OSError, ValueError, TypeError):
            info = None  # no info file (an older DB): described from the index itself
        return cls(index, info)

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
            selector = bitmap_selector(allowed)
            if self.ivf is not None:
                # a filter keeping a share f of the vectors leaves about f of each probed list: probe 1/f as
                # many lists so that as many allowed candidates are compared as without the filter
                share = max(len(allowed) / max(self.size, 1), 1e-3)
                nprobe = min(int(self.ivf.nlist), math.ceil(int(self.ivf.nprobe) / share))
                params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
            else:
                params = faiss.SearchParameters(sel=selector)
        return self._index.search(np.asarray(queries, np.float32), int(k), params=params)

    def within(self, queries: np.ndarray, threshold: float) -> list[np.ndarray]:
        """Per query, the ids with cosine >= ``threshold`` (a range search: IVF probes only near lists)."""
        lims, _, found = self._index.range_search(np.asarray(queries, np.float32), float(threshold))
        return [found[lims[q]:lims[q + 1]] for q in range(len(queries))]

    def ids(self) -> np.ndarray:
        if not self.size:
            return np.zeros(0, np.int64)
        if self.ivf is None:
            return faiss.vector_to_array(self._index.id_map)
        lists = self.ivf.invlists
        return np.concatenate([faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                               for i in range(self.ivf.nlist) if lists.list_size(i)])

    def persist(self, path: Path) -> None:
        atomic_write(path, faiss.serialize_index(self._index).tobytes())
        atomic_write(info_file(path), json.dumps(asdict(self.info)).encode("utf-8"))


def info_file(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def bitmap_selector(ids: Sequence[int] | np.ndarray) -> "faiss.IDSelectorBitmap":
    """A selector of ``ids`` as one bit per id (125 kB for a million ids, built in numpy): FAISS's batch
    selector hashed every allowed id on every query (16 ms for 99k ids)."""
    ids = np.asarray(ids, np.int64)
    bits = np.zeros(int(ids.max()) + 1 if len(ids) else 1, np.bool_)
    bits[ids] = True
    packed = np.packbits(bits, bitorder="little")  # FAISS reads bit i at byte i >> 3, position i & 7
    selector = faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed))  # its size in bytes: ids past it are out
    selector.keep_alive = packed  # the selector points into this array
    return selector


class FaissBackend:
    """One DB's index as ``index.faiss`` (+ ``.json``: what was built) in its folder."""

    name = "faiss"
    kinds = ("auto", "flat", "ivf")
    large_kind = "ivf"
    lazy = True  # a large file is saved every 1% of changes; a process opening it catches it up

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> FaissIndex | None:
        return FaissIndex.read(self.path)

    def build(self, ids: np.ndarray, vectors: np.ndarray, dim: int, kind: str = "auto") -> FaissIndex:
        return FaissIndex.build(ids, vectors, dim, kind)

    def save(self, index: FaissIndex) -> None:
        index.persist(self.path)

    def disk_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def where(self) -> str:
        return str(self.path)
