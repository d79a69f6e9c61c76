"""The FAISS backend: the index as a file in the DB folder (``index.faiss``), its kind fitting the size:
exact (flat) while a scan is fast enough, an inverted file (IVF-Flat) from ``IVF_MIN`` vectors, with the
number of lists probed chosen on a sample so that recall@10 against exact search reaches
``TARGET_RECALL``; what was built and the recall measured are saved beside it (``IndexInfo``).
HNSW is not offered here: FAISS's HNSW cannot remove a vector, and every delete would rebuild it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from rdm.db.index.base import TRAIN_PER_LIST, IndexInfo, breadth_for, ivf_lists, large, tune
from rdm.common.files import atomic_write
from rdm.errors import StoreError

NPROBES = (4, 8, 16, 32, 64, 128, 256)
FILTERED_NPROBES = (384, 512, 768, 1024, 1536, 2048, 4096)  # a filter may need many more lists probed


class FaissIndex:
    """A FAISS ``IndexIDMap2`` over a flat inner-product index, or an ``IndexIVFFlat`` (ids native).

    An IVF index read from its file is memory-mapped: 1M x 512-d opens in milliseconds instead of seconds
    of reading 2 GB, and a background thread then copies the mapped lists into memory (FAISS searched the
    mapping 4x slower under a filter) and swaps the copy in. Changes made since the file was read go to a
    small overlay (an exact index of the vectors added, plus the ids removed) merged into every search;
    saving applies them and writes one plain index again."""

    def __init__(self, index: faiss.Index, info: IndexInfo | None = None, mapped: bool = False):
        self._index = index
        self.dim = int(index.d)
        self.ivf = None if isinstance(index, faiss.IndexIDMap2) else _ivf_of(index)
        self.info = info or (IndexInfo("ivf", int(index.ntotal), int(self.ivf.nlist), int(self.ivf.nprobe),
                                       None, 0, None)
                             if self.ivf is not None else IndexInfo("flat", int(index.ntotal)))
        self.saved_version: int | None = None  # the DB's index version its file was saved at
        self.mapped = mapped  # ``index``'s lists are mapped from its file, read-only
        self._added = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))  # mapped: vectors added since it was read
        self._gone = np.zeros(0, np.int64)  # mapped: ids removed from the mapped part since (sorted)
        self._mapped_ids: np.ndarray | None = None  # mapped: the ids of the mapped part (sorted), when needed
        self._loading: threading.Thread | None = None  # mapped: the copy into memory, while it runs
        self._copied = False  # mapped: the lists searched are that copy
        self._last_selector: tuple | None = None  # (allowed, gone, selector) of the last search
        self._file: tuple[Path, int, int] | None = None  # mapped: (path, inode, size) of the file mapped

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
        # 2. the fewest probes that find what exact search finds, without a filter and with one
        made = cls(index, IndexInfo("ivf", n, nlist))

        def search_at(nprobe: int, wide: int, queries: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
            index.nprobe, made.info = nprobe, replace(made.info, nprobe=nprobe, nprobe_filtered=wide)
            return made.search(queries, 10, allowed)[1]

        knobs = sorted({min(p, nlist) for p in NPROBES})
        tuned = tune(ids, vectors, dim, knobs, sorted({min(p, nlist) for p in NPROBES + FILTERED_NPROBES}), search_at,
                     seed)
        index.nprobe = tuned.breadth
        return cls(index, IndexInfo("ivf", n, nlist, tuned.breadth, tuned.recall, tuned.sample, tuned.recall_filtered,
                                    nprobe_filtered=tuned.breadth_filtered))

    @classmethod
    def read(cls, path: Path, copy: bool = True) -> "FaissIndex | None":
        """The index saved at ``path``; None when it is missing or unreadable (then rebuild it). ``copy``:
        an IVF index's mapped lists are copied into memory in the background."""
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)  # IVF lists mapped; a flat index is read
        except Exception:  # noqa: BLE001 - FAISS raises RuntimeError for a missing or damaged file: "rebuild"
            return None
        try:
            saved = json.loads(info_file(path).read_text())
            version = saved.pop("saved_version", None)
            info = IndexInfo(**saved)
        except (OSError, ValueError, TypeError):
            version, info = None, None  # no info file (an older DB): described from the index itself
        ivf = _ivf_of(index) if not isinstance(index, faiss.IndexIDMap2) else None
        mapped = ivf is not None and isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)
        made = cls(index, info, mapped)
        made.saved_version = version
        if mapped:
            stat = path.stat()
            made._file = (path, stat.st_ino, stat.st_size)
        if mapped and copy:
            made._loading = threading.Thread(target=made._load, name="rdm-index-load", daemon=True)
            made._loading.start()
        return made

    def _load(self) -> None:
        """Search a copy in memory of the mapped lists from now on (the same vectors: the overlay holds)."""
        base = _ivf_of(self._index)
        copy = faiss.IndexIVFFlat(faiss.clone_index(base.quantizer), self.dim, base.nlist, faiss.METRIC_INNER_PRODUCT)
        for i in range(base.nlist):
            if not self._mapping_whole():
                return  # searches now say so, instead of this thread reading a page the file lost
            if n := base.invlists.list_size(i):
                copy.invlists.add_entries(i, n, base.invlists.get_ids(i), base.invlists.get_codes(i))
        copy.ntotal, copy.nprobe = base.ntotal, base.nprobe
        self._index = self.ivf = copy  # one assignment: a search already running keeps the mapping it holds
        self._copied = True
        self._mapped_ids_sorted()  # what a first remove needs (a second at 1M), ready before it comes

    def changed_elsewhere(self) -> None:
        """Nothing to do: the process holds the index, and catching it up applied every change."""

    def settle(self) -> None:
        """Wait for the copy of a mapped file into memory, if one runs."""
        loading = self._loading
        if loading is not None:
            loading.join()

    @property
    def size(self) -> int:
        return int(self._index.ntotal) - len(self._gone) + int(self._added.ntotal)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        target = self._added if self.mapped else self._index
        target.add_with_ids(np.asarray(vectors, np.float32), np.asarray(ids, np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        ids = np.asarray(ids, np.int64)
        if not self.mapped:
            self._index.remove_ids(ids)
            return
        self._added.remove_ids(ids)
        held = self._mapped_ids_sorted()  # a binary search each: intersect1d hashed all 1M ids on every delete
        at = np.minimum(np.searchsorted(held, ids), max(len(held) - 1, 0))
        self._gone = np.union1d(self._gone, ids[held[at] == ids] if len(held) else ids[:0])

    def _mapping_whole(self) -> bool:
        """Whether the mapped file still holds every byte mapped: saves replace the file (the mapping keeps the
        old one), but one cut short in place would kill this process on the next read of a lost page (SIGBUS)."""
        if self._file is None or self._copied:
            return True
        path, inode, size = self._file
        try:
            now = path.stat()
        except FileNotFoundError:  # removed: the mapping keeps its pages
            return True
        return now.st_ino != inode or now.st_size >= size

    @property
    def intact(self) -> bool:
        return self._mapping_whole()

    def _check_mapping(self) -> None:
        if not self._mapping_whole():
            raise StoreError(f"the index file {self._file[0]} was cut short while this process had it open: "
                             "run `rdm check --repair` (it rebuilds the index), then search again")

    def _mapped_ids_sorted(self) -> np.ndarray:
        if self._mapped_ids is None:
            self._mapped_ids = np.sort(_ivf_ids(self.ivf)) if self.ivf.ntotal else np.zeros(0, np.int64)
        return self._mapped_ids

    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) per query, ids -1 where fewer than ``k`` match; ``allowed`` restricts the ids."""
        self._check_mapping()
        queries = np.asarray(queries, np.float32)
        params = self._params(None if allowed is None else np.asarray(allowed, np.int64))
        found = self._index.search(queries, int(k), params=params)
        if not self._added.ntotal:
            return found
        extra = self._added.search(queries, int(k), params=None if allowed is None else
                                   faiss.SearchParameters(sel=bitmap_selector(allowed)))
        scores, ids = np.concatenate([found[0], extra[0]], axis=1), np.concatenate([found[1], extra[1]], axis=1)
        scores = np.where(ids >= 0, scores, -np.inf)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :int(k)]
        return np.take_along_axis(scores, best, axis=1), np.take_along_axis(ids, best, axis=1)

    def _params(self, allowed: np.ndarray | None):
        """The search parameters of the main (possibly mapped) index: the allowed ids less those removed
        from a mapped index, and for IVF under a filter more lists probed."""
        if allowed is None and not len(self._gone):
            return None
        selector = self._selector(allowed)
        if self.ivf is None:
            return faiss.SearchParameters(sel=selector)
        # a filter keeping a share f of the vectors leaves about f of each probed list: more lists are probed
        share = None if allowed is None else len(allowed) / max(self.size, 1)
        nprobe = breadth_for(int(self.ivf.nprobe), self.info.nprobe_filtered, share)
        return faiss.SearchParametersIVF(sel=selector, nprobe=min(int(self.ivf.nlist), nprobe))

    def _selector(self, allowed: np.ndarray | None):
        """The allowed ids less those removed from a mapped index, as a selector; the last one is kept while
        neither changes: a curator repeats a filter (the catalog hands back the same array), and a bitmap of
        a million ids costs about as much as the IVF search itself."""
        last, gone = self._last_selector, self._gone  # each read once: searches run in several threads
        if last is not None and last[0] is allowed and last[1] is gone:
            return last[2]
        if allowed is None:
            removed = bitmap_selector(gone)
            selector = faiss.IDSelectorNot(removed)
            selector.keep_alive = removed
        else:
            selector = bitmap_selector(np.setdiff1d(allowed, gone) if len(gone) else allowed)
        self._last_selector = (allowed, gone, selector)
        return selector

    def within(self, queries: np.ndarray, threshold: float) -> list[np.ndarray]:
        """Per query, the ids with cosine >= ``threshold`` (a range search: IVF probes only near lists)."""
        self._check_mapping()
        queries = np.asarray(queries, np.float32)
        found = []
        for index, params in ((self._index, self._params(None)), (self._added, None)):
            if index.ntotal:
                lims, _, ids = index.range_search(queries, float(threshold), params=params)
                found.append([ids[lims[q]:lims[q + 1]] for q in range(len(queries))])
        return [np.concatenate(parts) for parts in zip(*found)] if found else [np.zeros(0, np.int64)] * len(queries)

    def ids(self) -> np.ndarray:
        self._check_mapping()
        if not self._index.ntotal and not self._added.ntotal:
            return np.zeros(0, np.int64)
        if self.ivf is None:
            return faiss.vector_to_array(self._index.id_map)
        held = _ivf_ids(self.ivf) if self.ivf.ntotal else np.zeros(0, np.int64)
        if self.mapped:
            held = np.concatenate([np.setdiff1d(held, self._gone), faiss.vector_to_array(self._added.id_map)])
        return held

    def persist(self, path: Path, version: int | None = None) -> None:
        if self.mapped:  # FAISS would write a mapped index as a reference to its file: write the lists
            self._unmap()
        atomic_write(path, faiss.serialize_index(self._index).tobytes())
        atomic_write(info_file(path), json.dumps({**asdict(self.info), "saved_version": version}).encode("utf-8"))
        self.saved_version = version

    def _unmap(self) -> None:
        """Apply the overlay to the copy in memory (before saving). The copy comes from the mapping, not the
        file's path: another process may have saved a newer file there meanwhile."""
        if self._loading is not None:
            self._loading.join()
            self._loading = None
        if not self._copied:
            self._load()  # the copy failed in its thread (the error is logged there): make it here
        self.mapped = False
        if len(self._gone):
            self._index.remove_ids(self._gone)
        if self._added.ntotal:
            self._index.add_with_ids(self._added.index.reconstruct_n(0, self._added.ntotal),
                                     faiss.vector_to_array(self._added.id_map))
        self._added.reset()
        self._gone, self._mapped_ids = np.zeros(0, np.int64), None


def _ivf_of(index: faiss.Index):
    """The IVF inside ``index`` (None if none), holding ``index`` alive: FAISS hands back a view that does
    not own it, and once the background copy replaced a mapped index, a view still read by another thread
    (listing ids for a delete) pointed into freed memory: a segfault."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.referenced_objects = [index]  # the one attribute FAISS lets a view take
    return ivf


def _ivf_ids(ivf) -> np.ndarray:
    lists = ivf.invlists
    return np.concatenate([faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                           for i in range(ivf.nlist) if lists.list_size(i)])


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

    def save(self, index: FaissIndex, version: int | None = None) -> None:
        index.persist(self.path, version)

    def disk_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def where(self) -> str:
        return str(self.path)
