"""The Milvus backend: one DB's vectors in a Milvus collection, for collections past one machine.

The same client (``pymilvus``) talks to Milvus Lite (a local ``.db`` folder, one process: tests, the CLI)
or to a Milvus server or cluster by URI. The DB names its collection by an alias; a rebuild fills a new
collection and moves the alias, so readers in other processes never see a half-built index. Writes are
upserts and deletes by id, which makes replaying a change (a process catching up while the writer still
works) harmless. Index kinds: flat (exact), IVF-Flat, HNSW (``auto``: flat, HNSW from IVF_MIN vectors),
the search breadth chosen on a sample as for FAISS. What was built is saved as ``index.milvus.json``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from rdm.db.index.base import IndexInfo, breadth_for, ivf_lists, large, tune
from rdm.db.index.faiss_backend import FILTERED_NPROBES, NPROBES
from rdm.errors import StoreError
from rdm.common.files import atomic_write

WRITE_BATCH = 5000  # rows per insert/upsert/delete request (Milvus caps a request's size)
# A server reads "Bounded" by default: a row written a moment ago can be missing from a search, a deleted one
# still found (Milvus Lite reads strongly anyway). A curator's delete or upload must show at once, but a strong
# read waits for the server's next time tick (200 ms on the standalone server, against 3 ms bounded). So a handle
# reads strongly for FRESH_S after a write it made or that another process made (the catalog's index version
# says so), past the server's bounded staleness (5 s by default), and counts and id lists always. (A collection
# made before this rule reads as the server's default: ``rdm index --backend milvus`` makes it anew.)
STRONG, BOUNDED = {"consistency_level": "Strong"}, {"consistency_level": "Bounded"}
FRESH_S = 10.0
MAX_TOPK = 16384  # Milvus's limit on hits per query
WITHIN_MAX = 256  # hits per query of a range search: Milvus ranks a range search's hits as a top-k, so the
# cost grows with the cap; near-duplicate groups (its use) are far smaller
EFS = (16, 32, 64, 128, 256, 512)
FILTERED_EFS = (1024, 2048)
HNSW_BUILD = {"M": 16, "efConstruction": 200}
_clients: dict[tuple[str, str], object] = {}  # one client (gRPC channel) per URI and token in a process


def client_for(uri: str, token: str = ""):
    """A ``MilvusClient`` for ``uri``; an unreachable server or a Milvus Lite file that another process
    holds is a ``StoreError`` saying what to do."""
    from pymilvus import MilvusClient

    key = (uri, token)
    if key not in _clients:
        if lite_uri(uri):
            # Milvus Lite's in-process server logs the calls it does not implement (query iterators ask it
            # for a timestamp, then fall back), and pymilvus warns of the fallback: neither is ours to act on
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
        with engine_errors(uri):
            _clients[key] = MilvusClient(uri=uri, token=token, timeout=10)
    return _clients[key]


@contextmanager
def engine_errors(uri: str):
    """Milvus's and gRPC's errors as a ``StoreError`` that says where and what to do."""
    import grpc
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except (MilvusException, grpc.RpcError) as exc:
        hint = ("a Milvus Lite folder serves one process: for several (the dashboard and its job worker), run "
                "`milvus-lite server --data-dir DIR --port 19530` and set RDM_MILVUS_URI=http://127.0.0.1:19530"
                if lite_uri(uri) else "check that the Milvus server runs and RDM_MILVUS_URI / RDM_MILVUS_TOKEN are right")
        raise StoreError(f"the Milvus vector index at {uri} failed: {exc}; {hint}") from exc


def lite_uri(uri: str) -> bool:  # pymilvus's rule: a URI that is a path (ending .db) is a Milvus Lite folder
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


def guarded(method):
    """An engine call of a ``MilvusIndex`` / ``MilvusBackend``: its failures as ``StoreError``s."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with engine_errors(self.uri):
            return method(self, *args, **kwargs)
    return call


class MilvusIndex:
    """The DB's collection (through its alias) as a ``VectorIndex``."""

    intact = True  # nothing mapped

    def __init__(self, client, uri: str, alias: str, dim: int, info: IndexInfo):
        self._client, self.uri, self.alias, self.dim, self.info = client, uri, alias, int(dim), info
        self._size: int | None = None  # counted again after a write
        self._strong_until = time.monotonic() + FRESH_S  # just opened: another process may have just written
        self.saved_version = None  # the collection follows every change: no saved copy to date

    @property
    @guarded
    def size(self) -> int:
        if self._size is None:
            rows = self._client.query(self.alias, filter="", output_fields=["count(*)"], **STRONG)
            self._size = int(rows[0]["count(*)"])
        return self._size

    @guarded
    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        self._write(self._client.upsert, ids, np.asarray(vectors, np.float32))

    @guarded
    def remove(self, ids: Sequence[int]) -> None:
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), WRITE_BATCH):
            self._client.delete(self.alias, ids=ids[start:start + WRITE_BATCH])
        self._size = None
        self.changed_elsewhere()

    def _write(self, send, ids: Sequence[int], vectors: np.ndarray, collection: str | None = None) -> None:
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), WRITE_BATCH):
            send(collection or self.alias, [{"id": i, "vector": v} for i, v in
                                            zip(ids[start:start + WRITE_BATCH], vectors[start:start + WRITE_BATCH])])
        self._size = None
        self.changed_elsewhere()

    @guarded
    def search(self, queries: np.ndarray, k: int,
               allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        k = min(int(k), MAX_TOPK)
        scores, ids = np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        if allowed is not None and not len(allowed):
            return scores, ids
        found = self._client.search(self.alias, data=list(queries), limit=k, output_fields=["id"],
                                    filter=_only(allowed),
                                    search_params=self._params(k, None if allowed is None else
                                                               len(allowed) / max(self.size, 1)), **self._consistency())
        for q, hits in enumerate(found):
            for j, hit in enumerate(hits[:k]):
                scores[q, j], ids[q, j] = hit["distance"], hit["id"]
        return scores, ids

    @guarded
    def within(self, queries: np.ndarray, threshold: float) -> list[np.ndarray]:
        """A range search (at most WITHIN_MAX per query): Milvus keeps scores above ``radius``, exclusive."""
        params = self._params(WITHIN_MAX)
        params["params"] = {**params["params"], "radius": float(threshold) - 1e-6}
        found = self._client.search(self.alias, data=list(np.atleast_2d(np.asarray(queries, np.float32))),
                                    limit=WITHIN_MAX, output_fields=["id"], search_params=params,
                                    **self._consistency())
        return [np.array([hit["id"] for hit in hits], np.int64) for hits in found]

    def settle(self) -> None:
        """Nothing runs in the background here: the collection is loaded when it is opened."""

    def changed_elsewhere(self) -> None:
        self._strong_until = time.monotonic() + FRESH_S

    def _consistency(self) -> dict:
        return STRONG if time.monotonic() < self._strong_until else BOUNDED

    @guarded
    def ids(self) -> np.ndarray:
        pages = self._client.query_iterator(self.alias, batch_size=WRITE_BATCH, filter="", output_fields=["id"],
                                            **STRONG)
        ids: list[int] = []
        try:
            while page := pages.next():
                ids.extend(row["id"] for row in page)
        finally:
            pages.close()
        return np.asarray(ids, np.int64)

    def _params(self, k: int, share: float | None = None) -> dict:
        """Search parameters: the breadth for a filter keeping ``share`` of the vectors (HNSW's ef >= k)."""
        breadth = breadth_for(self.info.nprobe, self.info.nprobe_filtered, share)
        knob = {"hnsw": {"ef": max(breadth, int(k))},
                "ivf": {"nprobe": min(breadth, max(self.info.nlist, 1))}}.get(self.info.kind, {})
        return {"metric_type": "IP", "params": knob}


def _only(allowed: Sequence[int] | None) -> str:
    # Milvus filters by expression; the catalog decides what passes (category, tag, text), so the allowed
    # ids travel as a list (a 10% filter of 100k images is a 60 kB expression)
    return "" if allowed is None else f"id in [{','.join(str(int(i)) for i in allowed)}]"


class MilvusBackend:
    """One DB's index as the Milvus collection its ``alias`` names, at ``uri``."""

    name = "milvus"
    kinds = ("auto", "flat", "ivf", "hnsw")
    large_kind = "hnsw"
    lazy = False  # written as the DB changes

    def __init__(self, folder: Path, uri: str, alias: str, token: str = ""):
        self.folder, self.uri, self.alias, self.token = Path(folder), uri, alias, token
        self.info_file = self.folder / "index.milvus.json"

    @property
    def client(self):
        return client_for(self.uri, self.token)

    @guarded
    def read(self) -> MilvusIndex | None:
        if not self.client.has_collection(self.alias):
            return None
        self.client.load_collection(self.alias)  # a collection is searchable once loaded (a no-op when it is)
        fields = self.client.describe_collection(self.alias)["fields"]
        dim = next(int(f["params"]["dim"]) for f in fields if f["name"] == "vector")
        try:
            info = IndexInfo(**json.loads(self.info_file.read_text()))
        except (OSError, ValueError, TypeError):
            info = IndexInfo("flat", 0, backend=self.name, recall_at_10=None)  # unknown: searched as flat
        return MilvusIndex(self.client, self.uri, self.alias, dim, info)

    @guarded
    def build(self, ids: np.ndarray, vectors: np.ndarray, dim: int, kind: str = "auto") -> MilvusIndex:
        """A new collection of ``kind`` holding these vectors; then the alias moves to it and the old one goes."""
        if kind not in self.kinds:
            raise ValueError(f"unknown index kind {kind!r}: one of {', '.join(self.kinds)}")
        ids, vectors = np.asarray(ids, np.int64), np.asarray(vectors, np.float32)
        built = (kind if kind != "auto" else self.large_kind) if large(kind, len(ids)) else "flat"
        client, name = self.client, f"{self.alias}_{time.time_ns()}"
        # 1. the collection and its index, filled
        client.create_collection(name, schema=self._schema(dim), index_params=self._index_params(built, len(ids)),
                                 **STRONG)  # the default of reads that take no level (the id iterator)
        index = MilvusIndex(client, self.uri, name, dim, IndexInfo("flat", len(ids), backend=self.name))
        index._write(client.insert, ids, vectors, name)
        client.flush(name)
        # 2. an approximate index: the search breadth that finds what exact search finds
        if built != "flat":
            index.info = IndexInfo(built, len(ids), ivf_lists(len(ids)) if built == "ivf" else 0, backend=self.name)
            nlist = max(index.info.nlist, 1)
            knobs, wider = ((EFS, EFS + FILTERED_EFS) if built == "hnsw" else
                            (sorted({min(p, nlist) for p in NPROBES}),
                             sorted({min(p, nlist) for p in NPROBES + FILTERED_NPROBES})))

            def search_at(breadth: int, wide: int, queries: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
                index.info = replace(index.info, nprobe=breadth, nprobe_filtered=wide)
                return index.search(queries, 10, allowed)[1]

            tuned = tune(ids, vectors, dim, knobs, wider, search_at)
            index.info = replace(index.info, nprobe=tuned.breadth, nprobe_filtered=tuned.breadth_filtered,
                                 recall_at_10=tuned.recall, sample=tuned.sample, recall_filtered=tuned.recall_filtered)
        # 3. the alias moves: readers go from the old collection to the new one in one step
        old = client.describe_alias(self.alias)["collection_name"] if self._alias_exists() else None
        if old is None:
            client.create_alias(name, self.alias)
        else:
            client.alter_alias(name, self.alias)
            client.drop_collection(old)
        return MilvusIndex(client, self.uri, self.alias, dim, index.info)

    def _alias_exists(self) -> bool:
        return self.alias in self.client.list_aliases().get("aliases", [])

    def _schema(self, dim: int):
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
        return schema

    def _index_params(self, kind: str, size: int):
        params = self.client.prepare_index_params()
        build = {"hnsw": HNSW_BUILD, "ivf": {"nlist": ivf_lists(size)}}.get(kind, {})
        params.add_index(field_name="vector", index_type={"hnsw": "HNSW", "ivf": "IVF_FLAT"}.get(kind, "FLAT"),
                         metric_type="IP", params=build)
        return params

    def save(self, index: MilvusIndex, version: int | None = None) -> None:
        # rows are written as they change (Milvus keeps its own log); what was built is kept beside the DB
        atomic_write(self.info_file, json.dumps(asdict(index.info)).encode("utf-8"))

    def disk_bytes(self) -> int:
        local = Path(self.uri)
        return sum(f.stat().st_size for f in local.rglob("*") if f.is_file()) if local.is_dir() else 0

    def where(self) -> str:
        return f"Milvus collection {self.alias!r} at {self.uri}"
