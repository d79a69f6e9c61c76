"""A DB folder is data: paths read from its own files never lead out of it, and `rdm check` finds damage
that leaves ids in place (scaled or non-finite vectors, a vector file that is gone or short)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from rdm.db import ImageStore, StoreError
from rdm.settings import DEMO_PHOTOS

PHOTOS = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))


@pytest.fixture
def store(tmp_path, tiny_encoder) -> ImageStore:
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest(PHOTOS[:4])
    return store


@pytest.fixture
def victim(tmp_path):
    """A colleague's folder beside the DB, holding a file that looks like a vector file."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "vectors.f32").write_bytes(b"precious" * 64)
    return folder


def _set(store: ImageStore, sql: str, *args) -> None:
    con = sqlite3.connect(store.db_file)
    con.execute(sql, args)
    con.commit()
    con.close()


def _contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _assert_each_finds_itself(store: ImageStore) -> None:
    for rec in store.records():
        query = store.encoder.encode_images([store.open_image(rec.id)])
        assert store.search_vectors(query, k=1)[0][0].id == rec.id


@pytest.mark.parametrize("named", ["absolute", "../victim/vectors.f32"])
def test_a_vector_file_named_outside_the_db_is_never_written_or_deleted(store, victim, named):
    """Defect 2: meta.vectors_file pointing out of the DB folder is refused; repair starts a new one inside."""
    before = _contents(victim)
    _set(store, "UPDATE meta SET value = ? WHERE key = 'vectors_file'",
         str(victim / "vectors.f32") if named == "absolute" else named)
    fresh = ImageStore.open(store.path)
    report = fresh.check()
    assert not report.ok and any("not a vector file in the DB folder" in p for p in report.problems)
    with pytest.raises(StoreError, match="not a vector file in the DB folder"):
        fresh.reindex(fresh.encoder)
    fresh.check(repair=True)
    assert _contents(victim) == before
    assert fresh.check().ok
    _assert_each_finds_itself(fresh)


def test_a_row_naming_a_file_outside_the_db_is_refused(store, victim):
    """Defect 2: an image row's sha256 names its files; one that climbs out of the DB is never followed."""
    before = _contents(victim)
    target = store.records()[0]
    _set(store, "UPDATE images SET sha256 = ?, ext = 'f32' WHERE id = ?", "../../../victim/vectors", target.id)
    fresh = ImageStore.open(store.path)
    with pytest.raises(StoreError, match="names no file of the DB"):
        fresh.open_image(target.id)
    with pytest.raises(StoreError, match="names no file of the DB"):
        fresh.purge([target.id])
    report = fresh.check()
    assert any("names no file of the DB" in p for p in report.problems)
    fresh.check(repair=True)
    assert _contents(victim) == before
    assert fresh.check().ok and target.id not in {r.id for r in fresh.records()}


def test_a_milvus_lite_path_outside_the_db_is_refused(store, victim):
    """Defect 2: a Milvus Lite file the DB's meta names must be in the DB folder (it is written to)."""
    _set(store, "INSERT OR REPLACE INTO meta(key, value) VALUES ('vector_backend', 'milvus')")
    _set(store, "INSERT OR REPLACE INTO meta(key, value) VALUES ('milvus_uri', ?)", str(victim / "milvus.db"))
    fresh = ImageStore.open(store.path)
    with pytest.raises(StoreError, match="outside the DB folder"):
        fresh.search("a dog")
    assert any("outside the DB folder" in p for p in fresh.check().problems)
    assert not (victim / "milvus.db").exists()


def _rows(store: ImageStore) -> np.memmap:
    return np.memmap(store.catalog.vector_file().path, np.float32, "r+").reshape(-1, int(store.meta("dim")))


def test_check_finds_a_scaled_or_bit_flipped_vector_and_repair_restores_it(store):
    """Defect 8: stored vectors are unit length, so a row scaled x1e6 (it would top every search) or with an
    exponent bit flipped is damage that `rdm check` reports and `--repair` re-embeds."""
    scaled, flipped = (r.id for r in store.records()[1:3])
    rows = _rows(store)
    rows[scaled] *= 1e6
    rows[flipped].view(np.uint32)[0] ^= 1 << 29
    rows.flush()
    del rows
    fresh = ImageStore.open(store.path)
    problems = "\n".join(fresh.check().problems)
    assert f"image {scaled}: no vector" in problems and f"image {flipped}: no vector" in problems
    fresh.check(repair=True)
    assert fresh.check().ok
    assert np.allclose(np.linalg.norm(fresh.vectors()[1], axis=1), 1, atol=1e-5)
    _assert_each_finds_itself(fresh)


def test_search_on_a_db_whose_vectors_are_gone_says_so(store):
    """Defect 8: with the vector file and the index gone, a search is an error that says what to do, not 'no hits'."""
    store.catalog.vector_file().path.unlink()
    (store.path / "index.faiss").unlink()
    fresh = ImageStore.open(store.path)
    with pytest.raises(StoreError, match="4 live image.*vector file vectors.f32 is missing.*rdm check --repair"):
        fresh.search("a dog")
    assert "the vector file vectors.f32 is missing: 4 image(s)" in "\n".join(fresh.check().problems)
    fresh.check(repair=True)
    _assert_each_finds_itself(fresh)


def test_an_index_is_not_rebuilt_over_fewer_vectors_than_live_images(store):
    """Defect 8: `rdm index --kind flat` with vectors.f32 gone refuses instead of building over 0 vectors."""
    index_file = store.path / "index.faiss"
    saved = index_file.read_bytes()
    store.catalog.vector_file().path.unlink()
    fresh = ImageStore.open(store.path)
    with pytest.raises(StoreError, match="4 of the 4 live images.*no usable vector.*rdm check --repair"):
        fresh.rebuild_index("flat")
    assert index_file.read_bytes() == saved
    assert len(fresh.search("a dog", k=10)) == 4  # the index's own copies still serve


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n"


def test_a_thumbnail_from_the_db_folder_is_opened_by_the_allow_listed_decoder(store, monkeypatch):
    """A DB folder is data: an EPS saved as a thumbnail never reaches Ghostscript when copies are hashed."""
    import PIL.EpsImagePlugin

    from rdm.db.copies import find_copies

    ran = []
    monkeypatch.setattr(PIL.EpsImagePlugin, "Ghostscript", lambda *a, **k: ran.append(a))
    target = store.records()[0]
    store.blobs.thumb_file(target.sha256).write_bytes(EPS)
    _set(store, "DELETE FROM hashes WHERE image_id = ?", target.id)  # hashed again from its thumbnail
    find_copies(ImageStore.open(store.path))
    assert not ran
