"""The Milvus backend, on Milvus Lite (the engine embedded in pymilvus) and on a real standalone Milvus server
(PyPI's ``milvus`` package, started by ``tests/db/conftest.py``): the same index semantics as FAISS (search,
allow-list filters, add/remove, range search, recall measured on build, flat's top-10 exactly FAISS flat's),
a rebuild that moves the DB's alias to a new collection, the DB's choice kept, a DB shared by two processes
through a server, and an engine that fails as a message."""

import json
import os
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

import rdm.db.index.base as index_base
from rdm.cli import app
from rdm.db import ImageStore, StoreError
from rdm.db.index import FaissIndex, open_backend
from rdm.db.index.milvus_backend import MilvusBackend, client_for

from test_index import brute, clustered


@pytest.fixture(params=["lite", "server"])
def engine(request, tmp_path) -> str:
    """Where the collections live: Milvus Lite in the test's folder, or the real standalone server."""
    return str(tmp_path / "milvus.db") if request.param == "lite" else request.getfixturevalue("milvus_standalone").uri


def backend(tmp_path, uri: str, alias: str | None = None) -> MilvusBackend:
    """A backend under an alias of its own (a server is shared by every test of the session)."""
    return MilvusBackend(tmp_path, uri, alias or f"rdm_test_{uuid.uuid4().hex[:12]}")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_each_kind_searches_filters_adds_removes_and_is_read_back(kind, engine, tmp_path):
    vectors = clustered(3000)
    ids = np.arange(3000, dtype=np.int64) * 3 + 7  # sparse ids, as after purges
    milvus = backend(tmp_path, engine)
    index = milvus.build(ids, vectors, 32, kind)
    assert index.info.kind == kind and index.info.backend == "milvus" and index.size == 3000
    if kind != "flat":
        assert index.info.recall_at_10 >= 0.95 and index.info.recall_filtered >= 0.95 and index.info.sample == 200
    query = vectors[5]
    scores, found = index.search(query[None], 10)
    assert found[0][0] == ids[5] and scores[0][0] == pytest.approx(1.0, abs=1e-4)
    allowed = ids[::7]
    _, filtered = index.search(query[None], 10, allowed)
    assert set(filtered[0]) <= set(allowed.tolist())
    if kind == "flat":  # exact: the same as a brute-force scan, and as FAISS's flat index
        assert list(filtered[0]) == list(brute(vectors, ids, query, 10, allowed))
        faiss_flat = FaissIndex.build(ids, vectors, 32, "flat")
        assert list(index.search(vectors[:20], 10)[1].ravel()) == list(faiss_flat.search(vectors[:20], 10)[1].ravel())
    assert index.search(query[None], 5, [])[1].tolist() == [[-1] * 5]  # nothing allowed, nothing found
    index.remove(ids[:10])
    index.add(np.array([999_999]), vectors[:1])
    held = np.sort(index.ids())
    assert len(held) == 2991 and index.size == 2991 and 999_999 in held and ids[0] not in held
    index.add(np.array([999_999]), vectors[:1])  # a replayed write (a process catching up) adds nothing
    assert index.size == 2991
    milvus.save(index)
    again = backend(tmp_path, engine, milvus.alias).read()
    assert again.info == index.info and again.size == 2991 and again.dim == 32
    assert json.loads((tmp_path / "index.milvus.json").read_text())["kind"] == kind


def test_a_rebuild_moves_the_alias_and_drops_the_old_collection(engine, tmp_path):
    vectors = clustered(500)
    ids = np.arange(500, dtype=np.int64) + 1
    milvus = backend(tmp_path, engine)
    first = milvus.build(ids, vectors, 32, "flat")
    collections = set(milvus.client.list_collections())
    second = milvus.build(ids[:100], vectors[:100], 32, "flat")
    assert second.size == 100 and first.size == 100  # both handles read through the alias
    now = set(milvus.client.list_collections())
    assert len(collections - now) == 1 and len(now - collections) == 1  # a new collection, the old one gone


def test_its_neighbours_and_range_search_find_the_look_alikes_exact_search_finds(engine, tmp_path):
    from rdm.curation.review import near_duplicate_groups

    rng = np.random.default_rng(4)
    base = clustered(600, seed=4)
    near = base[:30] + rng.normal(0, 0.01, (30, 32)).astype(np.float32)
    vectors = np.concatenate([base, near / np.linalg.norm(near, axis=1, keepdims=True)])
    ids = np.arange(len(vectors), dtype=np.int64) + 1
    index = backend(tmp_path, engine).build(ids, vectors, 32, "flat")
    direct = near_duplicate_groups(ids, vectors, 0.97)
    assert near_duplicate_groups(ids, vectors, 0.97, nearest=index.search) == direct and len(direct) >= 30
    exact = [set(ids[vectors @ q >= 0.97].tolist()) for q in vectors[600:605]]
    assert [set(found.tolist()) for found in index.within(vectors[600:605], 0.97)] == exact


def test_a_milvus_db_keeps_its_backend_and_kind_and_checks_clean(tiny_encoder, tmp_path, monkeypatch):
    from rdm.settings import DEMO_PHOTOS

    monkeypatch.setenv("RDM_VECTOR_BACKEND", "milvus")
    db = tmp_path / "db"
    store = ImageStore.create(db, tiny_encoder)  # the environment chooses the backend of a new DB
    monkeypatch.delenv("RDM_VECTOR_BACKEND")
    photos = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))[:12]
    ids = [i.image_id for i in store.ingest(photos).added]
    _, vecs = store.vectors(ids)
    assert (db / "milvus.db").is_dir() and not (db / "index.faiss").exists()
    monkeypatch.setattr(index_base, "IVF_MIN", 8)  # 12 images count as large here: auto builds HNSW
    info = store.rebuild_index("auto")
    assert info.kind == "hnsw" and info.backend == "milvus" and info.recall_at_10 is not None
    reopened = ImageStore.open(db)  # the DB, not the environment, says where its vectors are
    assert reopened.index_backend.name == "milvus" and reopened.index_info == info
    assert reopened.search_vectors(vecs[:1], 1)[0][0].id == ids[0]
    reopened.delete([ids[0]])
    assert ids[0] not in [h.id for h in store.search_vectors(vecs[:1], 12)[0]]  # the other handle sees it
    reopened.restore([ids[0]])
    assert store.search_vectors(vecs[:1], 1)[0][0].id == ids[0]
    assert not reopened.check().problems
    out = CliRunner().invoke(app, ["index", "--kind", "flat", "--db", str(db), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["kind"] == "flat"
    assert json.loads(out.stdout)["backend"] == "milvus"
    with pytest.raises(StoreError, match="unknown index kind 'hnsw' for the faiss backend"):
        ImageStore.create(tmp_path / "faiss-db", tiny_encoder).rebuild_index("hnsw")


def test_an_unknown_backend_or_an_unreachable_server_is_a_message(tiny_encoder, tmp_path, monkeypatch):
    with pytest.raises(StoreError, match="unknown vector backend 'qdrant'"):
        ImageStore.create(tmp_path / "db", tiny_encoder, vector_backend="qdrant")
    assert not (tmp_path / "db" / "meta.sqlite").exists()
    monkeypatch.setenv("RDM_MILVUS_URI", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(StoreError, match="check that the Milvus server runs"):
        ImageStore.create(tmp_path / "db", tiny_encoder, vector_backend="milvus")
    assert not (tmp_path / "db" / "meta.sqlite").exists()  # no half-made DB left behind


def test_a_milvus_lite_folder_held_by_another_process_is_a_message(tmp_path):
    folder = tmp_path / "held.db"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pymilvus import MilvusClient\nMilvusClient(sys.argv[1])\nprint('held', flush=True)\n"
        "time.sleep(60)"), str(folder)], stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StoreError, match="serves one process"):
            client_for(str(folder))
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()


def test_the_backend_recorded_in_the_db_is_the_one_opened(tmp_path):
    settings = {"vector_backend": "milvus", "milvus_uri": "", "milvus_collection": "rdm_abc"}
    opened = open_backend(tmp_path, lambda key, default: settings.get(key, default))
    assert opened.name == "milvus" and opened.alias == "rdm_abc" and opened.uri.endswith("milvus.db")
    moved = open_backend(tmp_path, lambda key, default: settings.get(key, default), "http://milvus:19530")
    assert moved.uri == "http://milvus:19530"
    assert open_backend(tmp_path, lambda key, default: default).name == "faiss"


def test_a_db_moves_its_index_to_milvus_and_back_and_every_handle_follows(tiny_db):
    store, other = ImageStore.open(tiny_db), ImageStore.open(tiny_db)
    ids, vecs = store.vectors()
    before = [h.id for h in other.search_vectors(vecs[:2], 5)[0]]
    out = CliRunner().invoke(app, ["index", "--backend", "milvus", "--db", str(tiny_db), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["backend"] == "milvus" and "milvus.db" in json.loads(out.stdout)["where"]
    assert [h.id for h in other.search_vectors(vecs[:2], 5)[0]] == before  # same answers, from Milvus now
    assert other.index_backend.name == "milvus"
    other.delete([int(ids[0])])  # written to the collection, which the first handle reads too
    assert int(ids[0]) not in [h.id for h in store.search_vectors(vecs[:1], 12)[0]]
    assert not store.check().problems
    with pytest.raises(StoreError, match="unknown vector backend 'pinecone'"):
        store.rebuild_index(backend="pinecone")
    assert store.rebuild_index(backend="faiss").backend == "faiss"
    assert ImageStore.open(tiny_db).index_backend.name == "faiss" and not other.check().problems


@pytest.fixture(params=["lite-server", "standalone"])
def server_uri(request, tmp_path) -> str:
    """A Milvus server other processes reach over the network: Milvus Lite's server mode, or the standalone one."""
    if request.param == "standalone":
        yield request.getfixturevalue("milvus_standalone").uri
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "server"),
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:  # the server is up once it accepts a connection
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and server.poll() is None, "milvus-lite server did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


def test_two_processes_share_a_db_through_a_milvus_server(server_uri, tiny_encoder, tmp_path, monkeypatch):
    from rdm.settings import DEMO_PHOTOS

    monkeypatch.setenv("RDM_MILVUS_URI", server_uri)
    store = ImageStore.create(tmp_path / "db", tiny_encoder, vector_backend="milvus")
    ids = [i.image_id for i in store.ingest(sorted((DEMO_PHOTOS / "images").glob("*.jpg"))[:6]).added]
    store.delete([ids[0]])
    _, vecs = store.vectors(ids)
    faiss_twin = ImageStore.create(tmp_path / "twin", tiny_encoder)  # the same vectors behind FAISS flat
    faiss_twin.ingest(sorted((DEMO_PHOTOS / "images").glob("*.jpg"))[:6])
    faiss_twin.delete([ids[0]])
    top = [[h.id for h in row] for row in store.search_vectors(vecs, 5)]
    assert top == [[h.id for h in row] for row in faiss_twin.search_vectors(vecs, 5)] and top[1][0] == ids[1]
    # another process (a job worker, a second dashboard) searches the same collection on the server
    other = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom rdm.db import ImageStore\nstore = ImageStore.open(sys.argv[1])\n"
        "_, vecs = store.vectors()\nprint(store.index_backend.where())\n"
        "print(sorted(h.id for h in store.search_vectors(vecs[:1], 10)[0]))"), str(tmp_path / "db")],
        capture_output=True, text=True, env={**os.environ, "RDM_MILVUS_URI": server_uri}, timeout=120)
    assert other.returncode == 0, other.stderr
    where, found = other.stdout.strip().splitlines()[-2:]
    assert server_uri in where and json.loads(found) == sorted(ids[1:])
