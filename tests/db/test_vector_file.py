"""Vectors stored once: a file addressed by image id beside the SQLite catalog, which lists who has one."""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import closing

import numpy as np
import pytest

from rdm.db import ImageStore, StoreError
from rdm.db.vectorfile import VECTOR_FILE
from rdm.encoders import load_encoder
from test_store import CAT, DOG, HAMMER, PHOTOS


def _columns(db_file) -> list[str]:
    with closing(sqlite3.connect(db_file)) as con:
        return [r[1] for r in con.execute("PRAGMA table_info(vectors)")]


def _row(store: ImageStore, image_id: int) -> np.ndarray:
    dim = int(store.meta("dim"))
    raw = (store.path / VECTOR_FILE).read_bytes()[image_id * dim * 4:(image_id + 1) * dim * 4]
    return np.frombuffer(raw, np.float32)


def test_each_vector_is_in_the_vector_file_once_and_not_in_sqlite(tmp_path, tiny_encoder):
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    ids = [a.image_id for a in store.ingest([DOG, CAT, HAMMER]).added]
    assert _columns(store.db_file) == ["image_id"]  # SQLite lists who has a vector, and holds none
    listed, vectors = store.vectors()
    assert listed.tolist() == sorted(ids)
    for image_id, vec in zip(listed, vectors):
        np.testing.assert_array_equal(_row(store, int(image_id)), vec)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # another process reads the rows written after it first mapped the file
    reader = ImageStore.open(store.path)
    reader.vectors()
    more = store.ingest(PHOTOS[:2]).added[0].image_id
    np.testing.assert_array_equal(reader.vectors([more])[1], store.vectors([more])[1])
    store.purge([ids[0]])  # gone for good: its row is zeroed, not left behind
    assert not _row(store, ids[0]).any() and ids[0] not in store.vectors()[0]
    assert store.check().ok


def test_a_db_with_its_vectors_in_sqlite_moves_them_to_the_file_when_opened(tmp_path, tiny_encoder):
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest([DOG, CAT, HAMMER])
    ids, vectors = store.vectors()
    before = [h.id for h in store.search("a dog on a farm", k=3)]
    # the layout of a DB from before the vector file: a blob per row, no file
    with closing(sqlite3.connect(store.db_file)) as con:
        con.execute("CREATE TABLE old (image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, "
                    "vec BLOB NOT NULL)")
        con.executemany("INSERT INTO old VALUES (?, ?)", [(int(i), v.tobytes()) for i, v in zip(ids, vectors)])
        con.execute("DROP TABLE vectors")
        con.execute("ALTER TABLE old RENAME TO vectors")
        con.execute("DELETE FROM meta WHERE key = 'vectors_file'")
        con.commit()
    (store.path / VECTOR_FILE).unlink()

    opened = ImageStore.open(store.path)
    moved_ids, moved = opened.vectors()
    np.testing.assert_array_equal(moved_ids, ids)
    np.testing.assert_array_equal(moved, vectors)
    assert _columns(opened.db_file) == ["image_id"] and (opened.path / VECTOR_FILE).exists()
    assert [h.id for h in opened.search("a dog on a farm", k=3)] == before
    assert opened.check().ok


def test_check_re_embeds_a_damaged_row_and_removes_a_spare_vector_file(tmp_path, tiny_encoder):
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    ids = [a.image_id for a in store.ingest([DOG, CAT, HAMMER]).added]
    original = store.vectors([ids[1]])[1][0]
    dim = int(store.meta("dim"))
    with open(store.path / VECTOR_FILE, "r+b") as fh:  # a row lost (zeroed) on disk
        fh.seek(ids[1] * dim * 4)
        fh.write(b"\0" * dim * 4)
    (store.path / "vectors-99.f32").write_bytes(b"\0" * 64)  # left by a re-embed killed before its commit

    report = ImageStore.open(store.path).check()
    text = "\n".join(report.problems)
    assert f"image {ids[1]}: no vector" in text and "vector file the DB no longer uses: vectors-99.f32" in text
    repaired = ImageStore.open(store.path, tiny_encoder)
    assert repaired.check(repair=True).repaired and repaired.check().ok
    np.testing.assert_allclose(repaired.vectors([ids[1]])[1][0], original, atol=1e-5)
    assert not (store.path / "vectors-99.f32").exists()
    assert repaired.search_vectors(original[None], 1)[0][0].id == ids[1]


def test_a_re_embed_writes_a_new_file_of_the_new_width_and_removes_the_old(tmp_path, tiny_encoder):
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    ids = [a.image_id for a in store.ingest([DOG, CAT]).added]

    class Wider:
        """Another encoder of another width: the tiny one's vector twice, renormalised."""
        name, dim = "tiny-wide", 2 * tiny_encoder.dim

        def encode_images(self, images):
            v = np.concatenate([load_encoder("tiny").encode_images(images)] * 2, axis=1)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

        def encode_texts(self, texts):
            v = np.concatenate([load_encoder("tiny").encode_texts(texts)] * 2, axis=1)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    assert store.reindex(Wider()) == 2
    files = sorted(p.name for p in store.path.glob("vectors*.f32"))
    assert files == [store.meta("vectors_file")] and files != [VECTOR_FILE]
    listed, vectors = ImageStore.open(store.path).vectors()
    assert listed.tolist() == ids and vectors.shape == (2, 2 * tiny_encoder.dim)
    assert ImageStore.open(store.path).check().ok


def test_a_vector_write_that_fails_stores_nothing_and_says_what_to_do(tmp_path, tiny_encoder, monkeypatch):
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest([DOG])
    real = os.pwrite

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(StoreError, match="No space left on device.*Nothing of this change was stored"):
        store.ingest([CAT, HAMMER])
    assert len(store.records()) == 1 and len(ImageStore.open(store.path).vectors()[0]) == 1
    monkeypatch.setattr(os, "pwrite", real)
    assert len(store.ingest([CAT, HAMMER]).added) == 2  # the same files again, once there is room
    assert len(store.vectors()[0]) == 3 and store.check().ok


def test_a_damaged_row_is_left_out_of_search_until_repaired(tmp_path, tiny_encoder):
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    ids = [a.image_id for a in store.ingest([DOG, CAT, HAMMER]).added]
    dim = int(store.meta("dim"))
    with open(store.path / VECTOR_FILE, "r+b") as fh:  # not a number where a vector was
        fh.seek(ids[0] * dim * 4)
        fh.write(np.full(dim, np.nan, np.float32).tobytes())
    opened = ImageStore.open(store.path)
    assert opened.vectors()[0].tolist() == ids[1:]
    with pytest.raises(StoreError, match=f"image\\(s\\) {ids[0]} have no vector.*rdm check --repair"):
        opened.vectors([ids[0]])
    with pytest.raises(StoreError, match="1 of the 3 live images"):
        opened.rebuild_index()  # an explicit rebuild would drop it from search: refused until it is repaired
    (store.path / "index.faiss").unlink()  # rebuilt on open from the usable vectors only: no NaN score reaches a result
    hits = opened.search("a dog", k=3)
    assert [h.id for h in hits] and ids[0] not in [h.id for h in hits] and all(np.isfinite(h.score) for h in hits)
    assert ImageStore.open(store.path, tiny_encoder).check(repair=True).repaired
    assert ImageStore.open(store.path).check().ok and len(ImageStore.open(store.path).vectors()[0]) == 3


def test_short_writes_are_carried_on_until_every_row_is_on_disk(tmp_path, tiny_encoder, monkeypatch):
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: real(fd, bytes(data)[:100], offset))  # 100 B a call
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    ids = [a.image_id for a in store.ingest([DOG, CAT, HAMMER]).added]
    monkeypatch.setattr(os, "pwrite", real)
    fresh = ImageStore.open(store.path)
    listed, vectors = fresh.vectors()
    assert listed.tolist() == ids and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, tiny_encoder.encode_images([fresh.open_image(i) for i in ids]), atol=1e-5)


def test_a_damaged_row_does_not_stop_a_large_index_catching_up(tmp_path, tiny_encoder, monkeypatch):
    import rdm.db.index.base as index_module
    import rdm.db.keeper as keeper_module

    for module in (index_module, keeper_module):  # a handful of images count as "large" here
        monkeypatch.setattr(module, "LAZY_MIN", 2)
    monkeypatch.setattr(index_module, "CATCH_UP_SHARE", 0.9)
    writer = ImageStore.create(tmp_path / "db", tiny_encoder)
    ids = [a.image_id for a in writer.ingest(PHOTOS[:6]).added]
    dim = int(writer.meta("dim"))
    with open(writer.path / VECTOR_FILE, "r+b") as fh:
        fh.seek(ids[2] * dim * 4)
        fh.write(b"\0" * dim * 4)
    writer._keeper.rebuild()  # saved without the damaged one (`rdm index` would refuse: see above)
    added = writer.ingest(PHOTOS[6:8]).added  # not saved yet (lazily): a new process catches the file up
    found = {h.id for h in ImageStore.open(writer.path).search("a dog", k=10)}
    assert {a.image_id for a in added} <= found and ids[2] not in found
    assert "no vector" in "\n".join(ImageStore.open(writer.path).check().problems)
