"""Product photos uploaded in the dashboard: validated, oriented, stored once under a stable name."""

import io

import pytest
from PIL import Image

from rdm.common.sources import BadImage
from rdm.ingest.uploads import save_input_photo


def _jpeg(size=(64, 32), orientation=None):
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def test_photo_is_stored_upright_as_png_and_only_once(tmp_path):
    data = _jpeg(orientation=6)  # EXIF "rotate 90": the photo is really 32x64
    path = save_input_photo(tmp_path, "My Collar.JPG", data)
    assert path.suffix == ".png" and "my-collar" in path.name
    with Image.open(path) as im:
        assert im.size == (32, 64)
    assert save_input_photo(tmp_path, "My Collar.JPG", data) == path
    assert len(list(tmp_path.iterdir())) == 1


def test_a_file_that_is_not_a_photo_is_refused_with_the_reason(tmp_path):
    with pytest.raises(BadImage, match="not an image"):
        save_input_photo(tmp_path, "notes.txt", b"hello")
    assert list(tmp_path.iterdir()) == []
