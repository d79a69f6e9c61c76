"""The vector index behind the DB: a small interface, and FAISS as its backend.

The index holds the live images' vectors under their SQLite ids and is derived data: it can
always be rebuilt from the catalog. ``VectorIndex`` is what the store needs from a backend (add,
remove, search with an allow-list, the ids it holds, persist); ``FaissIndex`` implements it with an
inner-product index (vectors are L2-normalised, so scores are cosines) whose kind fits the size:
exact (flat) while a scan is fast enough, an inverted file (IVF-Flat) from ``IVF_MIN`` vectors, with
the number of lists probed chosen on a sample so that recall@10 against exact search reaches
``TARGET_RECALL``; what was built and the recall measured are saved beside it (``IndexInfo``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence

import faiss
import numpy as np

from rdm.files import atomic_write

INDEX_KINDS = ("auto", "flat", "ivf")
IVF_MIN = 50_000  # below this a flat scan answers in a few ms; above, an inverted file pays off
TARGET_RECALL = 0.95  # recall@10 against exact search, measured on a sample when an IVF index is built
NPROBES = (4, 8, 16, 32, 64, 128, 256)
RECALL_QUERIES = 200
TRAIN_PER_LIST = 40  # FAISS's rule of thumb: 39+ training points per centroid
FILTER_SHARE = 0.1  # the recall under a filter is measured for one keeping 10% (a category of ten)
# From this size the index file is not rewritten on every change (2 GB at 1M x 512-d): it is saved once
# the changes since the last save reach 1% of it, and a process that opens a file behind the DB catches
# it up from the catalog (only the vectors that changed are read) instead of rebuilding it.
LAZY_MIN = 50_000
CATCH_UP_SHARE = 0.1  # further behind than this: rebuilt


@dataclass(frozen=True)
class IndexInfo:
    """What was built, and how well it finds what exact search finds."""

    kind: str  # flat | ivf
    vectors: int  # at build time
    nlist: int = 0
    nprobe: int = 0
    recall_at_10: float | None = 1.0  # exact for flat; None: not measured (an index from an older version)
    sample: int = 0  # queries the recall was measured on
    recall_filtered: float | None = 1.0  # the same under a filter keeping FILTER_SHARE of the vectors

    def describe(self) -> str:
        if self.kind == "flat":
            return f"flat (exact) over {self.vectors:,} vectors"
        recall = (f"recall@10 {self.recall_at_10:.3f} against exact search ({self.recall_filtered:.3f} under a 10% "
                  f"filter) on {self.sample} sample queries") if self.recall_at_10 is not None \
            else "recall not measured"
        return f"IVF-Flat, {self.nlist:,} lists, {self.nprobe} probed: {recall}, built over {self.vectors:,} vectors"


class VectorIndex(Protocol):
    dim: int
    info: IndexInfo

    @property
    def size(self) -> int: ...

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None: ...

    def remove(self, ids: Sequence[int]) -> None: ...

    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def ids(self) -> np.ndarray: ...

    def within(self, queries: np.ndarray, threshold: float) -> list[np.ndarray]: ...

    def persist(self, path: Path) -> None: ...


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
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}: one of {', '.join(INDEX_KINDS)}")
        if len(ids) and (kind == "ivf" or (kind == "auto" and len(ids) >= IVF_MIN)):
            return cls._ivf(np.asarray(ids, np.int64), np.asarray(vectors, np.float32), int(dim))
        index = cls.empty(dim)
        if len(ids):
            index.add(ids, vectors)
        index.info = IndexInfo("flat", len(ids))
        return index

    @classmethod
    def _ivf(cls, ids: np.ndarray, vectors: np.ndarray, dim: int, seed: int = 0) -> "FaissIndex":
        # 1. about 4 sqrt(n) lists (fewer for a small set: each needs training points), trained on a sample
        n = len(ids)
        nlist = int(max(1, min(4 * math.sqrt(n), n // TRAIN_PER_LIST)))
        rng = np.random.default_rng(seed)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[rng.choice(n, min(n, nlist * TRAIN_PER_LIST * 2), replace=False)])
        index.add_with_ids(vectors, ids)
        # 2. the fewest probes that find, for a sample of queries near the data, what exact search finds,
        #    both unfiltered and under a filter keeping FILTER_SHARE of the vectors (a category, a tag)
        queries = vectors[rng.choice(n, min(n, RECALL_QUERIES), replace=False)]
        queries = queries + rng.normal(0, 0.05, queries.shape).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        keep = rng.random(n) < FILTER_SHARE
        truth = (_exact(ids, vectors, queries, dim),
                 _exact(ids[keep], vectors[keep], queries, dim) if keep.any() else [])
        made = cls(index)
        recall = filtered = 0.0
        for nprobe in NPROBES:
            index.nprobe = min(nprobe, nlist)
            recall = _recall(made.search(queries, 10)[1], truth[0])
            filtered = _recall(made.search(queries, 10, ids[keep])[1], truth[1]) if keep.any() else 1.0
            if min(recall, filtered) >= TARGET_RECALL or nprobe >= nlist:
                break
        return cls(index, IndexInfo("ivf", n, nlist, int(index.nprobe), round(recall, 4), len(queries),
                                    round(filtered, 4)))

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


def _exact(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, dim: int) -> list[set[int]]:
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    _, rows = flat.search(queries, min(10, len(ids)))
    return [set(ids[row[row >= 0]].tolist()) for row in rows]


def _recall(found: np.ndarray, truth: list[set[int]]) -> float:
    return float(np.mean([len(t & set(f.tolist())) / max(len(t), 1) for t, f in zip(truth, found)]))


def info_file(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def needs_rebuild(index: VectorIndex, kind: str) -> bool:
    """Whether the index no longer fits its size: a flat one grown past IVF_MIN (``auto``), an IVF one
    grown to twice what its lists were trained on, or one of another kind than asked."""
    size, built = index.size, index.info
    if kind == "flat" or (kind == "auto" and size < IVF_MIN // 2):
        return built.kind != "flat"
    if kind == "ivf" or size >= IVF_MIN:
        return built.kind != "ivf" or size > 2 * max(built.vectors, 1)
    return False


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


def save_due(size: int, unsaved: int) -> bool:
    """Whether an index with ``unsaved`` changes since its file was written should be saved now."""
    return size < LAZY_MIN or unsaved >= max(1000, size // 100)


def catch_up(index: VectorIndex | None, live_ids: np.ndarray, vectors_of, dim: int,
             kind: str = "auto") -> tuple[VectorIndex, str, int]:
    """``(index, problem, caught)``: the index holding exactly the live vectors. A large index a little
    behind the DB (its file is saved lazily) is caught up: ids gone are removed, new ones added with their
    vectors (``vectors_of(ids) -> (ids, vectors)``; ``vectors_of(None)``: every live one); ``caught`` says
    how many changes that took. Anything else that differs is a problem, and the index is rebuilt."""
    problem = index_problem(index, live_ids, dim)
    if not problem:
        return index, "", 0
    delta = lag(index, live_ids, dim)
    if delta is not None:
        missing, extra = delta
        if len(extra):
            index.remove(extra)
        if len(missing):
            index.add(*vectors_of(missing.tolist()))
        return index, "", len(missing) + len(extra)
    ids, vectors = vectors_of(None)
    return FaissIndex.build(ids, vectors, dim, kind), problem, 0


def lag(index: VectorIndex | None, live_ids: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(missing, extra)`` ids when ``index`` is a large index merely behind the DB (saved lazily), else None."""
    if index is None or index.dim != dim or len(live_ids) < LAZY_MIN:
        return None
    indexed = index.ids()
    missing, extra = np.setdiff1d(live_ids, indexed), np.setdiff1d(indexed, live_ids)
    if len(indexed) != len(np.unique(indexed)) or len(missing) + len(extra) > CATCH_UP_SHARE * len(live_ids):
        return None
    return missing, extra
