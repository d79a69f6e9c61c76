"""A DB on a real standalone Milvus server (the pip package ``milvus`` ships one), not only on Milvus Lite: it
answers with the same top-10 as FAISS's flat index, a delete is seen by the next search, and its check is clean. Skipped, with the reason, where the package is missing or cannot start
(tests/db/conftest.py starts the server; the index-level parity tests are in test_milvus_backend.py)."""

from __future__ import annotations

import numpy as np

from rdm.db import ImageStore
from rdm.settings import DEMO_PHOTOS

PHOTOS = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))


def test_a_milvus_server_answers_like_faiss_flat(milvus_standalone, tiny_encoder, tmp_path, monkeypatch):
    """Defect 13: parity with FAISS flat (exact) on a real server; every write is seen by the next search."""
    milvus_uri = milvus_standalone.uri  # started once for the session by tests/db/conftest.py
    monkeypatch.setenv("RDM_MILVUS_URI", milvus_uri)
    faiss = ImageStore.create(tmp_path / "faiss", tiny_encoder, vector_backend="faiss")
    milvus = ImageStore.create(tmp_path / "milvus", tiny_encoder, vector_backend="milvus")
    for store in (faiss, milvus):
        store.ingest(PHOTOS[:30])
    assert milvus_uri in milvus.index_backend.where()
    ids, vectors = faiss.vectors()
    queries = np.concatenate([vectors[:5], tiny_encoder.encode_texts(["a dog", "a red hammer"])])

    def top10(store: ImageStore) -> list[list[int]]:
        return [[h.id for h in hits] for hits in store.search_vectors(queries, 10)]

    assert top10(milvus) == top10(faiss)
    for store in (faiss, milvus):
        store.delete([int(ids[0])])
    assert top10(milvus) == top10(faiss) and int(ids[0]) not in sum(top10(milvus), [])
    assert milvus.check().ok
    assert [[h.id for h in hits] for hits in ImageStore.open(milvus.path).search_vectors(queries, 10)] == top10(faiss)
