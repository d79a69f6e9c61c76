"""Untrusted files: only allowed raster formats are decoded, sizes are checked before reading, one bad
zip member or file never sinks the rest of an ingest, and odd but valid images are accepted."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdm.db import ImageStore
from rdm.db.intake import DECODE_SIDE
from rdm.errors import BadImage, ProductError
from rdm.generate.product import load_product, save_product_upload
from rdm.settings import DEMO_PHOTOS
from rdm.common.sources import MAX_FILE_BYTES, decode_image
from rdm.ingest.uploads import save_input_photo

PHOTOS = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n"


@pytest.fixture
def store(tmp_path, tiny_encoder):
    return ImageStore.create(tmp_path / "db", tiny_encoder)


@pytest.fixture
def logging_gs(tmp_path, monkeypatch):
    """A fake Ghostscript first on PATH that records every call: nothing may run it."""
    calls = tmp_path / "gs-calls.txt"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    return calls


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_eps_renamed_jpg_never_reaches_ghostscript(store, tmp_path, logging_gs):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "holiday_photo.jpg").write_bytes(EPS)
    (folder / "dog.jpg").write_bytes(PHOTOS[0].read_bytes())
    report = store.ingest([folder])
    assert [i.name for i in report.added] == ["dog.jpg"]
    (skipped,) = report.skipped
    assert "accepted format" in skipped.reason and "JPEG, PNG" in skipped.reason
    uploaded = store.ingest_bytes([("holiday_photo.jpg", EPS)])
    assert "accepted format" in uploaded.skipped[0].reason
    with pytest.raises(BadImage, match="accepted format"):
        save_input_photo(tmp_path / "inputs", "collar.jpg", EPS)
    with pytest.raises(ProductError, match="accepted format"):
        save_product_upload(tmp_path / "inputs", "product.png", EPS)
    eps_on_disk = tmp_path / "product.png"
    eps_on_disk.write_bytes(EPS)
    with pytest.raises(ProductError, match="accepted format"):
        load_product(eps_on_disk)
    assert not logging_gs.exists(), logging_gs.read_text()
    assert not list((tmp_path / "inputs").glob("*")) if (tmp_path / "inputs").exists() else True


def test_damaged_zip_members_become_reasons_and_the_rest_lands(store, tmp_path):
    archive = tmp_path / "batch.zip"
    good = [p.read_bytes() for p in PHOTOS[:3]]
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.jpg", good[0])
        zf.writestr("crc.jpg", good[1])
        zf.writestr("b.jpg", good[2])
        zf.writestr("notes.txt", "not a photo")
        zf.writestr("..\\..\\escape.jpg", PHOTOS[3].read_bytes())
    raw = bytearray(archive.read_bytes())
    # flip one byte inside crc.jpg's compressed data: the member fails its CRC when read
    header = raw.find(b"crc.jpg") + len("crc.jpg")
    raw[header + 200] ^= 0xFF
    archive.write_bytes(bytes(raw))
    report = store.ingest([archive])
    assert sorted(i.name for i in report.added) == ["a.jpg", "b.jpg", "escape.jpg"]
    reasons = {i.name: i.reason for i in report.skipped}
    assert set(reasons) == {"crc.jpg", "notes.txt"}
    assert "cannot be read" in reasons["crc.jpg"] or "corrupt" in reasons["crc.jpg"]
    assert "not an image file type (.txt)" in reasons["notes.txt"]
    assert store.check().ok
    # the dashboard's upload takes the same path
    again = ImageStore.create(tmp_path / "db2", store.encoder).ingest_bytes([("batch.zip", bytes(raw))])
    assert sorted(i.name for i in again.added) == ["a.jpg", "b.jpg", "escape.jpg"]


def test_an_encrypted_or_unsupported_member_is_skipped_not_fatal(store, tmp_path):
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.jpg", PHOTOS[0].read_bytes())
        zf.writestr("locked.jpg", PHOTOS[1].read_bytes())
    raw = bytearray(archive.read_bytes())
    # mark locked.jpg as encrypted (general-purpose flag bit 0) in its local and central headers
    for signature in (b"PK\x03\x04", b"PK\x01\x02"):
        at = 0
        while (at := raw.find(signature, at)) >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if raw[name_at:name_at + 10] == b"locked.jpg":
                flag = at + (6 if signature == b"PK\x03\x04" else 8)
                raw[flag] |= 1
            at += 4
    archive.write_bytes(bytes(raw))
    report = store.ingest([archive])
    assert [i.name for i in report.added] == ["fine.jpg"]
    assert [i.name for i in report.skipped] == ["locked.jpg"] and "cannot be read" in report.skipped[0].reason


def test_sizes_are_checked_before_anything_is_read(store, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    sparse = folder / "huge.jpg"
    with sparse.open("wb") as fh:  # a sparse file: huge on paper, nothing on disk
        fh.truncate(MAX_FILE_BYTES + 1)
    (folder / "movie.mp4").write_bytes(b"\x00" * 16)
    read_sizes = []
    real_read = Path.open

    def spying_open(self, *args, **kwargs):
        handle = real_read(self, *args, **kwargs)
        read_sizes.append(self.name)
        return handle

    monkeypatch.setattr(Path, "open", spying_open)
    report = store.ingest([folder])
    reasons = {i.name: i.reason for i in report.skipped}
    assert "over the 100 MB limit" in reasons["huge.jpg"]
    assert "not an image file type (.mp4)" in reasons["movie.mp4"]
    assert "huge.jpg" not in read_sizes and "movie.mp4" not in read_sizes


def test_a_zip_member_bigger_than_its_header_says_is_refused(store, tmp_path):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.jpg", b"\xff" * (MAX_FILE_BYTES + 10))  # compresses to ~100 KB
    raw = bytearray(archive.read_bytes())
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size fields
        at = raw.find(signature)
        raw[at + size_at:at + size_at + 4] = (1000).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    report = store.ingest([archive])
    assert not report.added
    (item,) = report.skipped  # zipfile stops at the declared size, and the CRC then fails: never 100 MB read
    assert "cannot be read" in item.reason or "over the 100 MB limit" in item.reason


def test_16_bit_pngs_are_converted_to_8_bit(store):
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    big_endian = io.BytesIO()  # TIFF keeps the byte order: Pillow opens it as I;16B
    Image.frombytes("I;16B", (64, 64), ramp.astype(">u2").tobytes()).save(big_endian, format="TIFF")
    for data in (png(Image.fromarray(ramp)), big_endian.getvalue()):
        decoded = decode_image(data)
        assert decoded.mode == "RGB" and decoded.size == (64, 64)
        assert np.asarray(decoded)[..., 0].max() == ramp.max() >> 8  # scaled, not clipped at 255
        assert np.asarray(decoded)[0, 16, 0] == (16 * 16) >> 8
    report = store.ingest_bytes([("sixteen.png", png(Image.fromarray(ramp)))])
    assert len(report.added) == 1


def test_big_photos_are_decoded_reduced_but_recorded_at_full_size(store):
    big = Image.new("RGB", (4000, 3000), (40, 120, 200))
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG")
    (added,) = store.ingest_bytes([("wide.jpg", buffer.getvalue())]).added
    record = store.get(added.image_id)
    assert (record.width, record.height) == (4000, 3000)
    assert max(decode_image(buffer.getvalue(), max_side=DECODE_SIDE).size) < 2 * DECODE_SIDE


def test_an_input_photo_and_a_locked_product_from_one_upload_do_not_collide(tmp_path):
    rgba = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    rgba.paste((200, 20, 20, 255), (10, 5, 30, 25))
    data = png(rgba)
    as_input = save_input_photo(tmp_path, "collar.png", data)
    as_product = save_product_upload(tmp_path, "collar.png", data)
    assert as_input != as_product
    assert Image.open(as_input).mode == "RGB" and Image.open(as_product).mode == "RGBA"
    assert load_product(as_product).image.size == (20, 20)  # cropped to the opaque part: the alpha survived
