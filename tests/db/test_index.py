"""The vector index by size: flat (exact) for small DBs, IVF-Flat past IVF_MIN with its recall@10 measured
and kept; filters as a bitmap; add, remove, ids and persistence for both kinds, through the store too."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import rdm.db.index.base as index_module
from rdm.cli import app
from rdm.db import ImageStore
from rdm.db.index import FaissIndex, IndexInfo, needs_rebuild
from rdm.db.index.faiss_backend import _ivf_ids
from rdm.errors import StoreError


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    x = centres[rng.integers(0, 50, n)] + rng.normal(0, 0.4, (n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(vectors, ids, query, k, allowed=None):
    mask = np.ones(len(ids), bool) if allowed is None else np.isin(ids, allowed)
    scores = vectors[mask] @ query
    return ids[mask][np.argsort(-scores)[:k]]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_both_kinds_search_filter_add_remove_and_persist(kind, tmp_path):
    vectors = clustered(4000)
    ids = np.arange(4000, dtype=np.int64) * 3 + 7  # sparse ids, as after purges
    index = FaissIndex.build(ids, vectors, 32, kind)
    assert index.info.kind == kind and index.size == 4000
    if kind == "ivf":
        assert index.info.recall_at_10 >= 0.95 and index.info.recall_filtered >= 0.95 and index.info.sample == 200
    query = vectors[5]
    _, found = index.search(query[None], 10)
    assert found[0][0] == ids[5]
    allowed = ids[::7]
    _, filtered = index.search(query[None], 10, allowed)
    assert set(filtered[0]) <= set(allowed.tolist())
    if kind == "flat":
        assert list(filtered[0]) == list(brute(vectors, ids, query, 10, allowed))
    index.remove(ids[:10])
    index.add(np.array([999_999]), vectors[:1])
    held = np.sort(index.ids())
    assert len(held) == 3991 and 999_999 in held and ids[0] not in held
    index.persist(tmp_path / "index.faiss")
    again = FaissIndex.read(tmp_path / "index.faiss")
    assert again.info == index.info and again.size == index.size
    assert json.loads((tmp_path / "index.faiss.json").read_text())["kind"] == kind
    np.testing.assert_array_equal(again.search(query[None], 10, allowed)[1], index.search(query[None], 10, allowed)[1])


def test_an_index_outgrowing_its_kind_is_rebuilt():
    flat = IndexInfo("flat", 10)

    class Grown:
        def __init__(self, size, info):
            self.size, self.info = size, info

    assert needs_rebuild(Grown(index_module.IVF_MIN, flat), "auto")
    assert not needs_rebuild(Grown(1000, flat), "auto")
    assert needs_rebuild(Grown(3 * index_module.IVF_MIN, IndexInfo("ivf", index_module.IVF_MIN)), "auto")  # retrain
    assert not needs_rebuild(Grown(index_module.IVF_MIN + 10, IndexInfo("ivf", index_module.IVF_MIN)), "auto")
    assert needs_rebuild(Grown(100, IndexInfo("ivf", 100)), "flat")


def test_the_store_keeps_its_index_kind_and_searches_the_same(tiny_db, monkeypatch):
    store = ImageStore.open(tiny_db)
    ids, vecs = store.vectors()
    before = [h.id for h in store.search_vectors(vecs[:3], 3)[0]]
    info = store.rebuild_index("ivf")
    assert info.kind == "ivf" and store.index_kind == "ivf"
    reopened = ImageStore.open(tiny_db)  # the choice and the index are saved with the DB
    assert reopened.index_info.kind == "ivf" and reopened.index_info.recall_at_10 == info.recall_at_10
    assert [h.id for h in reopened.search_vectors(vecs[:3], 3)[0]][0] == before[0]
    reopened.delete([int(ids[0])])
    assert int(ids[0]) not in [h.id for h in reopened.search_vectors(vecs[:1], 12)[0]]
    reopened.restore([int(ids[0])])
    assert reopened.search_vectors(vecs[:1], 1)[0][0].id == int(ids[0])
    assert not reopened.check().problems
    out = CliRunner().invoke(app, ["index", "--kind", "flat", "--db", str(tiny_db), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["kind"] == "flat"
    with pytest.raises(StoreError, match="unknown index kind"):
        reopened.rebuild_index("hnsw-ish")
    # auto: a DB that grows past IVF_MIN gets an IVF index on the next change
    monkeypatch.setattr(index_module, "IVF_MIN", 8)
    store = ImageStore.open(tiny_db)
    store.rebuild_index("auto")
    assert store.index_info.kind == "ivf"  # 12 live vectors >= 8


def test_a_large_index_is_saved_lazily_and_caught_up_by_the_next_process(tiny_db, monkeypatch):
    import rdm.db.keeper as keeper_module

    for module in (index_module, keeper_module):  # 12 images count as "large" here
        monkeypatch.setattr(module, "LAZY_MIN", 5)
    store = ImageStore.open(tiny_db)
    ids, vecs = store.vectors()
    saved = store.index_backend.path.stat().st_mtime_ns
    store.delete([int(ids[0])])  # one change: far from 1% of... at least 1000 changes, so not saved
    assert store.index_backend.path.stat().st_mtime_ns == saved
    assert int(ids[0]) not in [h.id for h in store.search_vectors(vecs[:1], 12)[0]]  # in memory it follows
    other = ImageStore.open(tiny_db)  # another process: the file is behind, caught up from the catalog
    assert int(ids[0]) not in [h.id for h in other.search_vectors(vecs[:1], 12)[0]]
    assert other.index_note == "" and not other.check().problems  # behind by design, not broken
    repaired = other.check(repair=True)
    assert any("saved the index file" in r for r in repaired.repaired)
    assert int(ids[0]) not in FaissIndex.read(other.index_backend.path).ids()


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_near_duplicates_through_the_index_match_all_pairs(kind):
    from rdm.curation.review import near_duplicate_groups

    rng = np.random.default_rng(4)
    base = clustered(3000, seed=4)
    near = base[:40] + rng.normal(0, 0.01, (40, 32)).astype(np.float32)  # 40 near copies
    vectors = np.concatenate([base, near / np.linalg.norm(near, axis=1, keepdims=True)])
    ids = np.arange(len(vectors), dtype=np.int64) + 1
    index = FaissIndex.build(ids, vectors, 32, kind)
    if kind == "ivf":  # a range search probes as many lists as the index's own searches do
        index.ivf.nprobe = index.ivf.nlist
    direct = near_duplicate_groups(ids, vectors, 0.97)
    through = near_duplicate_groups(ids, vectors, 0.97, nearest=index.search)
    assert through == direct and len(direct) >= 40


def test_a_mapped_ivf_file_takes_changes_in_an_overlay_and_saves_them(tmp_path):
    """An IVF file opens memory-mapped (read-only in FAISS): adds and removes made since go to an overlay,
    searched with it, and saving writes them into one plain file again."""
    vectors = clustered(4000)
    ids = np.arange(4000, dtype=np.int64) * 3 + 7
    path = tmp_path / "index.faiss"
    built = FaissIndex.build(ids[:3500], vectors[:3500], 32, "ivf")
    built.persist(path, 7)
    mapped = FaissIndex.read(path, copy=False)  # searched through the mapping until copied below
    assert mapped.mapped and mapped.saved_version == 7 and mapped.size == 3500
    for index in (built, mapped):  # the same changes to the index in memory and to the mapped one
        index.ivf.nprobe = index.ivf.nlist  # exhaustive: the two must then find exactly the same
        index.remove(ids[:20])
        index.add(ids[3500:], vectors[3500:])
        index.remove(ids[3600:3610])  # added since, then removed
        index.add(ids[:5], vectors[:5])  # removed, then restored
    assert mapped.size == built.size == 3975
    np.testing.assert_array_equal(np.sort(mapped.ids()), np.sort(built.ids()))
    queries = vectors[::97]
    for allowed in (None, ids[::5]):
        assert [set(r) for r in mapped.search(queries, 10, allowed)[1]] == \
               [set(r) for r in built.search(queries, 10, allowed)[1]]
    assert [set(r.tolist()) for r in mapped.within(queries, 0.9)] == [set(r.tolist()) for r in built.within(queries, 0.9)]
    mapped._load()  # what the background copy does: the lists in memory are searched the same
    mapped.ivf.nprobe = mapped.ivf.nlist
    assert mapped._copied and [set(r) for r in mapped.search(queries, 10, ids[::5])[1]] == \
        [set(r) for r in built.search(queries, 10, ids[::5])[1]]
    mapped.persist(path, 8)
    again = FaissIndex.read(path)
    assert again.mapped and again.saved_version == 8 and again.size == 3975 and not mapped.mapped
    again.settle()  # the background copy into memory, done
    assert again._copied and again.size == 3975
    np.testing.assert_array_equal(np.sort(again.ids()), np.sort(built.ids()))


def test_a_large_file_saved_at_the_dbs_version_opens_without_listing_every_id(tiny_db, monkeypatch):
    import rdm.db.keeper as keeper_module
    from rdm.db.catalog import Catalog

    for module in (index_module, keeper_module):  # 12 images count as "large" here
        monkeypatch.setattr(module, "LAZY_MIN", 5)
    writer = ImageStore.open(tiny_db)
    ids, vecs = writer.vectors()
    writer.save_index()
    listed = []
    real = Catalog.live_ids
    monkeypatch.setattr(Catalog, "live_ids", lambda self: listed.append(1) or real(self))
    reader = ImageStore.open(tiny_db)
    assert reader.search_vectors(vecs[:1], 1)[0][0].id == int(ids[0]) and not listed  # trusted: saved at this version
    writer.delete([int(ids[0])])  # now the file is behind (saved lazily): the reader lists and catches up
    assert int(ids[0]) not in [h.id for h in reader.search_vectors(vecs[:1], 12)[0]] and listed
    assert not reader.check().problems


def test_listing_ids_while_the_background_copy_replaces_the_mapping_is_safe(tmp_path):
    """A delete lists a mapped index's ids through FAISS's view of its lists; the background copy swapping the
    mapping out must not free what that view reads (it did: a segfault within 50 opens)."""
    vectors = clustered(20000)
    ids = np.arange(20000, dtype=np.int64)
    path = tmp_path / "index.faiss"
    FaissIndex.build(ids, vectors, 32, "ivf").persist(path, 1)
    for _ in range(50):
        mapped = FaissIndex.read(path)  # the copy into memory starts now
        view = mapped.ivf
        assert all(len(_ivf_ids(view)) == 20000 for _ in range(3))
        mapped.settle()
        assert mapped._copied and len(mapped.ids()) == 20000
