"""The image DB: ingest (good, bad, duplicate), curation, search, the encoder guard, repair."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdm.encoders import load_encoder
from rdm.settings import DEMO_PHOTOS
from rdm.db import EncoderMismatch, ImageStore, StoreError

PHOTOS = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))
DOG = DEMO_PHOTOS / "images" / "gcompris-farm-dog.jpg"
CAT = DEMO_PHOTOS / "images" / "gcompris-farm-cat.jpg"
HAMMER = DEMO_PHOTOS / "images" / "gcompris-categories-tools-hammer-1.jpg"


@pytest.fixture(params=["faiss", "milvus"])
def store(request, tmp_path, tiny_encoder):
    """The store's behaviour is the same over either vector backend (Milvus through Milvus Lite)."""
    return ImageStore.create(tmp_path / "db", tiny_encoder, vector_backend=request.param)


def _damage_index(store: ImageStore) -> None:
    if store.index_backend.name == "faiss":
        (store.path / "index.faiss").write_bytes(b"garbage")
    else:  # a collection another client emptied
        held = store.read_index_file()
        held.remove(held.ids())


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its data never had (a decompression bomb's trick)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _write_mixed_folder(folder: Path) -> dict[str, str]:
    """Good and bad files side by side; returns bad file name -> expected reason fragment."""
    folder.mkdir()
    shutil.copy(DOG, folder / "dog.jpg")
    shutil.copy(CAT, folder / "cat.jpg")
    (folder / "rgba.png").write_bytes(_save(Image.new("RGBA", (64, 48), (200, 10, 10, 128)), "PNG"))
    (folder / "cmyk.jpg").write_bytes(_save(Image.new("CMYK", (50, 40), (0, 80, 80, 0)), "JPEG"))
    (folder / "png-named.jpg").write_bytes(_save(Image.new("RGB", (40, 40), "navy"), "PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    (folder / "rotated.jpg").write_bytes(_save(Image.new("RGB", (80, 30), "green"), "JPEG", exif=exif))
    bad = {
        "empty.jpg": "empty file",
        "truncated.jpg": "truncated",
        "notes.jpg": "not an image",
        "bomb.png": "decompression bomb",
        "wide.png": "too large",
        "float.tif": "unsupported pixel mode",
        "pixel.png": "too small",
        "broken.zip": "not a readable zip",
        "vector.svg": "not an image",
    }
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(DOG.read_bytes()[: DOG.stat().st_size // 3])
    (folder / "notes.jpg").write_text("this is a shopping list, not a photo")
    (folder / "bomb.png").write_bytes(_png_header_only(60_000, 60_000))
    (folder / "wide.png").write_bytes(_save(Image.new("L", (20_000, 20)), "PNG"))
    (folder / "float.tif").write_bytes(_save(Image.new("F", (32, 32)), "TIFF"))
    (folder / "pixel.png").write_bytes(_save(Image.new("RGB", (1, 1)), "PNG"))
    (folder / "broken.zip").write_bytes(b"PK\x03\x04 definitely not a zip")
    (folder / "vector.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    return bad


def test_ingest_folder_stores_good_files_and_reports_each_bad_one(store, tmp_path):
    bad = _write_mixed_folder(tmp_path / "in")
    report = store.ingest([tmp_path / "in"], category="animals", tags="pets, Demo")

    assert sorted(i.name for i in report.added) == sorted(
        ["dog.jpg", "cat.jpg", "rgba.png", "cmyk.jpg", "png-named.jpg", "rotated.jpg"])
    reasons = {i.name: i.reason for i in report.skipped}
    assert set(reasons) == set(bad)
    for name, fragment in bad.items():
        assert fragment in reasons[name], (name, reasons[name])
    stats = store.stats()
    assert stats.live == 6 and stats.by_category == {"animals": 6}
    rotated = next(r for r in store.records() if r.filename == "rotated.jpg")
    assert (rotated.width, rotated.height) == (30, 80)  # EXIF orientation applied
    assert rotated.tags == ("pets", "demo")
    assert store.open_image(rotated.id).size == (30, 80)
    assert store.thumbnail_file(store.get(rotated.id)).exists()
    # The original bytes are kept as uploaded.
    dog = next(r for r in store.records() if r.filename == "dog.jpg")
    assert store.image_path(dog.id).read_bytes() == DOG.read_bytes()
    assert store.check().ok


def test_zip_and_uploaded_bytes_are_ingested_like_files(store, tmp_path):
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(DOG, "photos/dog.jpg")
        zf.writestr("__MACOSX/photos/._dog.jpg", b"junk")
        zf.writestr("photos/readme.txt", "hello")
    report = store.ingest([archive])
    assert [i.name for i in report.added] == ["dog.jpg"]
    assert [i.name for i in report.skipped] == ["readme.txt"]

    upload = io.BytesIO()
    with zipfile.ZipFile(upload, "w") as zf:
        zf.write(CAT, "cat.jpg")
    report = store.ingest_bytes([("hammer.jpg", HAMMER.read_bytes()), ("more.zip", upload.getvalue())],
                                category="objects")
    assert sorted(i.name for i in report.added) == ["cat.jpg", "hammer.jpg"]
    assert store.stats().live == 3


def test_exact_duplicates_are_reported_and_not_stored_twice(store, tmp_path):
    first = store.ingest([DOG])
    copy = tmp_path / "same-dog-other-name.jpg"
    shutil.copy(DOG, copy)
    again = store.ingest([copy, DOG, CAT, CAT])
    assert [i.name for i in again.added] == ["gcompris-farm-cat.jpg"]
    dupes = again.duplicates
    assert len(dupes) == 3
    assert dupes[0].image_id == first.added[0].image_id
    assert "same bytes as image" in dupes[0].reason
    assert "in this batch" in dupes[2].reason
    assert store.stats().live == 2


def test_edit_delete_restore_purge(store):
    ids = [i.image_id for i in store.ingest([DOG, CAT, HAMMER], category="misc").added]
    dog, cat, hammer = ids
    store.edit(dog, category="animals", tags="dog, pet", caption="A farm dog")
    rec = store.get(dog)
    assert (rec.category, rec.tags, rec.caption) == ("animals", ("dog", "pet"), "A farm dog")
    store.edit_many([cat, hammer], add_tags="reviewed")
    assert all("reviewed" in r.tags for r in store.records(ids=[cat, hammer]))
    assert [r.id for r in store.records(tag="reviewed")] == [cat, hammer]
    assert [r.id for r in store.records(text="farm dog")] == [dog]

    version = store.index_version
    assert store.delete([cat]) == 1
    assert store.index_version == version + 1
    assert cat not in [h.id for h in store.search("a cat", k=10)]
    assert [r.id for r in store.records(only_deleted=True)] == [cat]
    assert store.stats().deleted == 1
    assert store.restore(cat) == 1
    assert cat in [h.id for h in store.search("a cat", k=10)]

    path = store.image_path(hammer)
    assert store.purge(hammer) == 1
    assert not path.exists()
    with pytest.raises(StoreError, match="no image with id"):
        store.get(hammer)
    # Ids are never reused: a run that cites image `hammer` can't silently point elsewhere.
    new = store.ingest([HAMMER]).added[0].image_id
    assert new > hammer
    assert store.check().ok
    with pytest.raises(StoreError, match="no image with id 9999"):
        store.delete([9999])


def test_changes_survive_reopening(store):
    ids = [i.image_id for i in store.ingest([DOG, CAT]).added]
    store.edit(ids[0], caption="kept")
    store.delete(ids[1])
    again = ImageStore.open(store.path)
    assert again.get(ids[0]).caption == "kept"
    assert [h.id for h in again.search("anything", k=5)] == [ids[0]]


def test_search_filters_and_similar(store):
    store.ingest([DOG, CAT], category="animals", tags="pets")
    store.ingest([HAMMER], category="objects", tags="tools")
    assert {h.record.category for h in store.search("x", k=10, category="objects")} == {"objects"}
    assert {h.record.filename for h in store.search("x", k=10, tag="pets")} == {DOG.name, CAT.name}
    assert store.search("x", k=10, category="nope") == []
    dog_id = store.records(text="dog")[0].id
    hits = store.similar(dog_id, k=5)
    assert dog_id not in [h.id for h in hits] and len(hits) == 2
    assert hits[0].score >= hits[1].score
    assert [h.id for h in store.similar(dog_id, k=1)] == [hits[0].id]  # k of the others, itself dropped
    assert [h.id for h in store.similar(dog_id, k=5, category="animals")] == [h.id for h in hits if
                                                                             h.record.category == "animals"]
    with pytest.raises(StoreError, match="empty"):
        store.search("   ")


def test_text_search_finds_the_right_photo_with_the_offline_encoder(tmp_path):
    store = ImageStore.create(tmp_path / "db", load_encoder("conse"))
    store.ingest([DOG, CAT, HAMMER] + [p for p in PHOTOS if "fish-1" in p.name][:2])
    assert store.search("a dog", k=1)[0].record.filename == DOG.name
    assert store.search("a cat", k=1)[0].record.filename == CAT.name
    assert store.search("a hammer", k=1)[0].record.filename == HAMMER.name
    assert store.similar(store.records(text="fish-1")[0].id, k=1)[0].record.filename.startswith(
        "gcompris-categories-fishes")


def test_a_db_is_bound_to_its_encoder(store, tmp_path):
    store.ingest([DOG])

    class Other:
        name, dim = "other-encoder", 8

    with pytest.raises(EncoderMismatch, match="rdm reindex --encoder other-encoder"):
        ImageStore.open(store.path, Other())
    with pytest.raises(EncoderMismatch, match="dimension"):
        store.search_vectors(np.ones((1, 8), np.float32))


def test_reindex_switches_encoder_and_keeps_deleted_images_restorable(store):
    ids = [i.image_id for i in store.ingest([DOG, CAT]).added]
    store.delete(ids[1])

    class Doubled:
        """A different encoder: the tiny one's vectors, reversed (still unit length)."""
        name, dim = "tiny-reversed", 32

        def encode_images(self, images):
            return load_encoder("tiny").encode_images(images)[:, ::-1].copy()

        def encode_texts(self, texts):
            return load_encoder("tiny").encode_texts(texts)[:, ::-1].copy()

    assert store.reindex(Doubled()) == 2
    reopened = ImageStore.open(store.path)
    assert reopened.stats().encoder == "tiny-reversed"
    reopened._encoder = Doubled()
    reopened.restore(ids[1])
    assert {h.id for h in reopened.search("x", k=5)} == set(ids)
    assert reopened.check().ok


def test_check_repair_fixes_a_damaged_db_without_losing_images(store):
    ids = [i.image_id for i in store.ingest(PHOTOS[:6]).added]
    recs = {r.id: r for r in store.records()}
    # Damage it on purpose, every way at once.
    _damage_index(store)
    store.blobs.thumb_file(recs[ids[0]].sha256).unlink()
    store.blobs.image_file(recs[ids[1]].sha256, recs[ids[1]].ext).unlink()  # this one is truly lost
    orphan = store.path / "images" / "ff" / ("f" * 64 + ".jpg")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left over by a killed ingest")
    (store.path / "thumbs" / ".x.jpg.123.tmp").write_bytes(b"partial")
    con = sqlite3.connect(store.db_file)
    con.execute("DELETE FROM vectors WHERE image_id = ?", (ids[2],))
    con.commit()
    con.close()

    fresh = ImageStore.open(store.path)
    report = fresh.check()
    assert not report.ok
    text = "\n".join(report.problems)
    for fragment in ("thumbnail missing", "original file missing", "no vector", "file with no DB row",
                     "temporary file", "vector index"):
        assert fragment in text
    # Search still answers before any repair (the index is rebuilt from the DB: in memory for a FAISS file,
    # in the engine for Milvus, whose collection is the index itself)
    assert len(fresh.search("x", k=10)) == 5  # the one without a vector is not searchable

    repaired = fresh.check(repair=True)
    assert repaired.repaired
    assert fresh.check().ok
    survivors = {r.id for r in fresh.records()}
    assert survivors == set(ids) - {ids[1]}
    assert {h.id for h in fresh.search("x", k=10)} == survivors
    assert not orphan.exists()


KILL_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from pathlib import Path
from rdm.encoders import load_encoder
from rdm.db import ImageStore
store = ImageStore.create(sys.argv[1], load_encoder("tiny"))
def progress(done, total):
    print(done, flush=True)
store.ingest([Path(sys.argv[2])], batch_size=4, progress=progress)
print("finished", flush=True)
"""


@pytest.mark.parametrize("delay_lines", [1, 3])
def test_sigkill_during_ingest_leaves_a_repairable_db_with_every_acknowledged_image(tmp_path, delay_lines):
    src = tmp_path / "src"
    src.mkdir()
    names = [p.name for p in PHOTOS[:40]]
    for p in PHOTOS[:40]:
        shutil.copy(p, src / p.name)
    db = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(db), str(src)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acknowledged = 0
    for _ in range(delay_lines):
        line = proc.stdout.readline().strip()
        assert line and line != "finished", "ingest finished before it could be killed"
        acknowledged = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = ImageStore.open(db)  # opens after a kill at any point
    store.check(repair=True)
    assert store.check().ok
    present = {r.filename for r in store.records()}
    assert set(sorted(names)[:acknowledged]) <= present
    assert len(store.search("x", k=100)) == len(present)


def test_a_commit_by_another_process_between_load_and_commit_is_not_lost(store):
    """Two handles on one DB stand for two processes: B commits while A is between loading its
    index and committing its own batch (A writes its files, then waits for the write lock B holds).
    A's index must then hold both, and so must the file."""
    a, b = ImageStore.open(store.path), ImageStore.open(store.path)
    a.ingest([DOG])
    assert len(a.search("x", k=10)) == 1  # A's index is loaded and current
    real_write = a.blobs.write

    def write_after_b_commits(sha, data, thumbnail):
        b.ingest([CAT])  # the other process's commit lands right now
        return real_write(sha, data, thumbnail)

    a.blobs.write = write_after_b_commits
    a.ingest([HAMMER])
    assert {h.record.filename for h in a.search("x", k=10)} == {DOG.name, CAT.name, HAMMER.name}
    assert a.check().ok  # the index file holds all three too
    assert len(ImageStore.open(store.path).search("x", k=10)) == 3
    # a delete racing a commit the same way
    real_require = a.catalog.require

    def require_after_b_commits(ids):
        b.ingest([PHOTOS[5]])
        return real_require(ids)

    a.catalog.require = require_after_b_commits
    a.delete(a.records(text="hammer")[0].id)
    assert {h.record.filename for h in a.search("x", k=10)} == {DOG.name, CAT.name, PHOTOS[5].name}
    assert a.check().ok
