"""What the store needs from a vector index, whatever the engine: the interface, what was built, and the
rules that keep an index in step with the catalog (rebuild when outgrown, save when due, catch up).

The index holds the live images' vectors under their SQLite ids and is derived data: it can always be
rebuilt from the catalog. A backend (``IndexBackend``) reads, builds and saves indexes for one DB; an
index (``VectorIndex``) adds, removes and searches with an allow-list. Vectors are L2-normalised, so an
inner product is a cosine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import faiss
import numpy as np

INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
IVF_MIN = 50_000  # below this a flat scan answers in a few ms; above, an approximate index pays off
TARGET_RECALL = 0.95  # recall@10 against exact search, measured on a sample when an approximate index is built
RECALL_QUERIES = 200
FILTER_SHARE = 0.1  # the recall under a filter is measured for one keeping 10% (a category of ten)
TRAIN_PER_LIST = 40  # FAISS's rule of thumb: 39+ training points per centroid
# From this size a FAISS index file is not rewritten on every change (2 GB at 1M x 512-d): it is saved once
# the changes since the last save reach 1% of it, and a process that opens a file behind the DB catches it
# up from the catalog (only the vectors that changed are read) instead of rebuilding it.
LAZY_MIN = 50_000
CATCH_UP_SHARE = 0.1  # further behind than this: rebuilt


@dataclass(frozen=True)
class IndexInfo:
    """What was built, and how well it finds what exact search finds."""

    kind: str  # flat | ivf | hnsw
    vectors: int  # at build time
    nlist: int = 0  # ivf: lists
    nprobe: int = 0  # ivf: lists probed per query; hnsw: the search breadth (ef)
    recall_at_10: float | None = 1.0  # exact for flat; None: not measured (an index from an older version)
    sample: int = 0  # queries the recall was measured on
    recall_filtered: float | None = 1.0  # the same under a filter keeping FILTER_SHARE of the vectors
    backend: str = "faiss"  # faiss | milvus
    nprobe_filtered: int = 0  # the search breadth under that filter (0: not measured, 1/share times nprobe)

    def describe(self) -> str:
        engine = "" if self.backend == "faiss" else f"{self.backend.capitalize()} "
        if self.kind == "flat":
            return f"{engine}flat (exact) over {self.vectors:,} vectors"
        recall = (f"recall@10 {self.recall_at_10:.3f} against exact search ({self.recall_filtered:.3f} under a 10% "
                  f"filter) on {self.sample} sample queries") if self.recall_at_10 is not None \
            else "recall not measured"
        wider = f" ({self.nprobe_filtered} under a 10% filter)" if self.nprobe_filtered else ""
        shape = (f"HNSW, search breadth {self.nprobe}{wider}" if self.kind == "hnsw"
                 else f"IVF-Flat, {self.nlist:,} lists, {self.nprobe}{wider} probed")
        return f"{engine}{shape}: {recall}, built over {self.vectors:,} vectors"


class VectorIndex(Protocol):
    dim: int
    info: IndexInfo
    saved_version: int | None  # the DB's index version when it was saved, if its backend records it
    intact: bool  # False once a file it maps was cut short under it: read it again

    @property
    def size(self) -> int: ...

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None: ...

    def remove(self, ids: Sequence[int]) -> None: ...

    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) per query, ids -1 where fewer than ``k`` match; ``allowed`` restricts the ids."""

    def ids(self) -> np.ndarray: ...

    def within(self, queries: np.ndarray, threshold: float) -> list[np.ndarray]:
        """Per query, the ids with cosine >= ``threshold``."""

    def settle(self) -> None:
        """Return once the work the index does in the background after opening is done (searches answer
        meanwhile, maybe slower)."""

    def changed_elsewhere(self) -> None:
        """The DB changed since this index was last read (another process, or this one): answer with those
        changes from now on (an engine that serves reads a moment stale reads fresh for a while)."""


class IndexBackend(Protocol):
    """Where one DB's index lives: a FAISS file in the DB folder, or a Milvus collection."""

    name: str
    kinds: tuple[str, ...]  # the INDEX_KINDS it builds
    large_kind: str  # what ``auto`` builds from IVF_MIN vectors
    lazy: bool  # its saved copy may lag the DB by design (then caught up on open), or is written as it changes

    def read(self) -> VectorIndex | None:
        """The saved index; None when it is missing or unreadable (then rebuild it)."""

    def build(self, ids: np.ndarray, vectors: np.ndarray, dim: int, kind: str = "auto") -> VectorIndex: ...

    def save(self, index: VectorIndex, version: int | None = None) -> None:
        """Keep ``index`` as the one of the DB's index ``version``."""

    def disk_bytes(self) -> int: ...

    def where(self) -> str:
        """The index's location, for messages."""


def large(kind: str, size: int) -> bool:
    """Whether ``kind`` asks for an approximate index over ``size`` vectors."""
    return size > 0 and (kind in ("ivf", "hnsw") or (kind == "auto" and size >= IVF_MIN))


def ivf_lists(size: int) -> int:
    """About 4 sqrt(n) lists (fewer for a small set: each needs training points)."""
    return int(max(1, min(4 * math.sqrt(size), size // TRAIN_PER_LIST)))


def needs_rebuild(index: VectorIndex, kind: str, large_kind: str = "ivf") -> bool:
    """Whether the index no longer fits its size: a flat one grown past IVF_MIN (``auto``), an IVF one
    grown to twice what its lists were trained on, or one of another kind than asked."""
    size, built = index.size, index.info
    if kind == "flat" or (kind == "auto" and size < IVF_MIN // 2):
        return built.kind != "flat"
    if kind != "auto" or size >= IVF_MIN:
        wanted = large_kind if kind == "auto" else kind
        return built.kind != wanted or (wanted == "ivf" and size > 2 * max(built.vectors, 1))
    return False


@dataclass(frozen=True)
class Tuned:
    breadth: int  # IVF lists probed, HNSW's ef
    breadth_filtered: int  # the same for a search under a filter keeping FILTER_SHARE
    recall: float
    recall_filtered: float
    sample: int  # queries measured


def tune(ids: np.ndarray, vectors: np.ndarray, dim: int, knobs: Sequence[int], filtered_knobs: Sequence[int],
         search_at: Callable[[int, int, np.ndarray, np.ndarray | None], np.ndarray], seed: int = 0) -> Tuned:
    """The smallest search breadths at which, for a sample of queries near the data, the index finds what
    exact search finds (recall@10 >= TARGET_RECALL): one in ``knobs`` unfiltered, then one in
    ``filtered_knobs`` (no smaller) under a filter keeping FILTER_SHARE of the vectors (a category, a tag):
    a filter needs a wider search, but how much wider is measured, not assumed.
    ``search_at(breadth, filtered breadth, queries, allowed)`` returns the found ids per query."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    queries = vectors[rng.choice(n, min(n, RECALL_QUERIES), replace=False)]
    queries = queries + rng.normal(0, 0.05, queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    keep = rng.random(n) < FILTER_SHARE
    truth = exact(ids, vectors, queries, dim)
    knob, found = knobs[-1], 0.0
    for knob in knobs:
        if (found := recall(search_at(knob, knob, queries, None), truth)) >= TARGET_RECALL:
            break
    if not keep.any():
        return Tuned(int(knob), int(knob), round(found, 4), 1.0, len(queries))
    truth_kept = exact(ids[keep], vectors[keep], queries, dim)
    wide, kept = knob, 0.0
    for wide in [w for w in filtered_knobs if w >= knob] or [knob]:
        if (kept := recall(search_at(knob, wide, queries, ids[keep]), truth_kept)) >= TARGET_RECALL:
            break
    return Tuned(int(knob), int(wide), round(found, 4), round(kept, 4), len(queries))


def breadth_for(base: int, filtered: int, share: float | None) -> int:
    """The search breadth for a query whose filter keeps ``share`` of the vectors (None: no filter):
    ``filtered``, the breadth measured for FILTER_SHARE, scaled by how much more or less the filter keeps,
    and never below ``base``, the unfiltered breadth."""
    if share is None:
        return base
    share = max(share, 1e-3)
    if not filtered:  # an index from before the filtered breadth was measured: 1/share as wide
        return math.ceil(base / share)
    return max(base, math.ceil(filtered * FILTER_SHARE / share))


def exact(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, dim: int) -> list[set[int]]:
    flat = faiss.IndexFlatIP(dim)
    flat.add(np.asarray(vectors, np.float32))
    _, rows = flat.search(np.asarray(queries, np.float32), min(10, len(ids)))
    return [set(ids[row[row >= 0]].tolist()) for row in rows]


def recall(found: np.ndarray, truth: list[set[int]]) -> float:
    return float(np.mean([len(t & set(f.tolist())) / max(len(t), 1) for t, f in zip(truth, found)]))


def index_problem(index: VectorIndex | None, live_ids: np.ndarray, dim: int) -> str:
    """Why ``index`` does not hold exactly the live vectors ('' if it does)."""
    if index is None:
        return "the vector index is missing or unreadable"
    if index.dim != dim:
        return f"the vector index has dimension {index.dim}, the DB's encoder has {dim}"
    indexed = np.sort(index.ids())
    if not np.array_equal(np.sort(live_ids), indexed):
        missing = len(np.setdiff1d(live_ids, indexed))
        extra = len(np.setdiff1d(indexed, live_ids))
        dupes = len(indexed) - len(np.unique(indexed))
        return (f"the vector index is out of step with the DB ({missing} live image(s) missing, "
                f"{extra} extra, {dupes} duplicated)")
    return ""


def save_due(size: int, unsaved: int) -> bool:
    """Whether an index with ``unsaved`` changes since its file was written should be saved now."""
    return size < LAZY_MIN or unsaved >= max(1000, size // 100)


def catch_up(index: VectorIndex | None, version: int, live_ids: Callable[[], np.ndarray], vectors_of, dim: int,
             backend: IndexBackend, kind: str = "auto") -> tuple[VectorIndex, str, int]:
    """``(index, problem, caught)``: the index holding exactly the live vectors (``live_ids()``) of the DB's
    index ``version``. A large index a little behind the DB (a file saved lazily; a shared engine another
    process wrote to) is caught up: ids gone are removed, new ones added with their vectors
    (``vectors_of(ids) -> (ids, vectors)``; ``vectors_of(None)``: every live one); ``caught`` says how many
    changes that took. Anything else that differs is a problem, and the index is rebuilt by ``backend``.

    Listing a million ids from SQLite and from the index costs seconds, so two cheaper proofs are trusted
    on open (``rdm check`` always compares the ids): a large file saved at this very version, and a shared
    engine (written as the DB changes) holding as many vectors as the DB has live ones."""
    if index is not None and index.dim == dim and index.saved_version == version and index.size >= LAZY_MIN:
        return index, "", 0
    ids = live_ids()
    if index is not None and not backend.lazy and index.dim == dim and index.size == len(ids):
        return index, "", 0
    problem = index_problem(index, ids, dim)
    if not problem:
        return index, "", 0
    delta = lag(index, ids, dim)
    if delta is not None:
        missing, extra = delta
        if len(extra):
            index.remove(extra)
        if len(missing):
            index.add(*vectors_of(missing.tolist()))
        return index, "", len(missing) + len(extra)
    ids, vectors = vectors_of(None)
    return backend.build(ids, vectors, dim, kind), problem, 0


def lag(index: VectorIndex | None, live_ids: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(missing, extra)`` ids when ``index`` is a large index merely behind the DB, else None."""
    if index is None or index.dim != dim or len(live_ids) < LAZY_MIN:
        return None
    indexed = index.ids()
    missing, extra = np.setdiff1d(live_ids, indexed), np.setdiff1d(indexed, live_ids)
    if len(indexed) != len(np.unique(indexed)) or len(missing) + len(extra) > CATCH_UP_SHARE * len(live_ids):
        return None
    return missing, extra
