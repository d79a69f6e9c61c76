"""The DB's vector index: the interface the store uses (``base``) and its engines, FAISS in the DB folder
(``faiss_backend``) or a Milvus collection (``milvus_backend``), chosen per DB when it is created."""

from __future__ import annotations

import uuid
from pathlib import Path

from rdm.db.index.base import (INDEX_KINDS, IVF_MIN, LAZY_MIN, IndexBackend, IndexInfo, VectorIndex, catch_up,
                               index_problem, lag, needs_rebuild, save_due)
from rdm.db.index.faiss_backend import FaissBackend, FaissIndex, bitmap_selector
from rdm.common.files import inside
from rdm.errors import StoreError
from rdm.settings import vector_config

BACKENDS = ("faiss", "milvus")
INDEX_FILE = "index.faiss"
MILVUS_LITE_FILE = "milvus.db"  # Milvus Lite's folder inside the DB folder, when no RDM_MILVUS_URI is set


def backend_settings(name: str, milvus_uri: str = "") -> dict[str, str]:
    """What a new DB records about its index engine (its meta settings)."""
    if name not in BACKENDS:
        raise StoreError(f"unknown vector backend {name!r} (RDM_VECTOR_BACKEND): use one of {', '.join(BACKENDS)}")
    if name == "faiss":
        return {"vector_backend": "faiss"}
    # a collection of its own on a shared server; an empty URI means Milvus Lite inside the DB folder
    return {"vector_backend": "milvus", "milvus_uri": milvus_uri, "milvus_collection": f"rdm_{uuid.uuid4().hex[:16]}"}


def open_backend(folder: Path, setting, milvus_uri: str | None = None, milvus_token: str | None = None) -> IndexBackend:
    """The backend a DB recorded (``setting(key, default)`` reads its meta); ``milvus_uri`` (default: the
    environment's RDM_MILVUS_URI) points a Milvus DB at another server, e.g. after a move."""
    config = vector_config()
    milvus_uri = config.milvus_uri if milvus_uri is None else milvus_uri
    milvus_token = config.milvus_token if milvus_token is None else milvus_token
    name = setting("vector_backend", "faiss")
    if name == "faiss":
        return FaissBackend(Path(folder) / INDEX_FILE)
    if name != "milvus":
        raise StoreError(f"the DB at {folder} records vector backend {name!r}, which this version does not know")
    from rdm.db.index.milvus_backend import MilvusBackend, lite_uri

    recorded = setting("milvus_uri", "")
    if not milvus_uri and recorded and lite_uri(recorded) and inside(Path(folder), recorded) is None:
        # a Milvus Lite file is written to: one the DB's own meta names must be in the DB folder
        raise StoreError(f"the DB at {folder} keeps its Milvus Lite index at {recorded}, outside the DB folder: "
                         "a path read from a DB's own file is not followed out of it. If you trust that location, set "
                         "RDM_MILVUS_URI to it (then `rdm index --backend faiss` brings the index into the DB folder)")
    uri = milvus_uri or recorded or str(Path(folder).resolve() / MILVUS_LITE_FILE)
    return MilvusBackend(Path(folder), uri, setting("milvus_collection", ""), milvus_token)


__all__ = ["BACKENDS", "INDEX_FILE", "INDEX_KINDS", "IVF_MIN", "LAZY_MIN", "FaissBackend", "FaissIndex", "IndexBackend",
           "IndexInfo", "VectorIndex", "backend_settings", "bitmap_selector", "catch_up", "index_problem", "lag",
           "needs_rebuild", "open_backend", "save_due"]
