"""The DB's files: content-addressed originals (the bytes as uploaded) and 256-px JPEG thumbnails.

``images/ab/<sha256>.<ext>`` and ``thumbs/ab/<sha256>.jpg``: the same bytes are one file, and a
file name never changes meaning. Files are written durably (temp + fsync + rename).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

from PIL import Image

from rdm.errors import BadImage, StoreError
from rdm.common.files import atomic_write, jpeg_thumbnail
from rdm.common.sources import decode_image

THUMB_SIZE = 256
FOLDERS = ("images", "thumbs")
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "AVIF": "avif",  # MPO: phones' multi-picture JPEGs
              "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def make_thumbnail(image: Image.Image) -> bytes:
    return jpeg_thumbnail(image, THUMB_SIZE)


def ext_for(data: bytes) -> str:
    """The file extension of the format the bytes are in."""
    return EXTENSIONS.get(Image.open(io.BytesIO(data)).format or "", "img")


class Blobs:
    def __init__(self, root: Path):
        self.root = Path(root)

    def image_file(self, sha: str, ext: str) -> Path:
        return self.root / "images" / sha[:2] / f"{sha}.{ext}"

    def thumb_file(self, sha: str) -> Path:
        return self.root / "thumbs" / sha[:2] / f"{sha}.jpg"

    def write(self, sha: str, data: bytes, thumbnail: bytes) -> str:
        """Store the original and its thumbnail (JPEG bytes); returns the original's extension."""
        ext = ext_for(data)
        atomic_write(self.image_file(sha, ext), data)
        atomic_write(self.thumb_file(sha), thumbnail)
        return ext

    def write_thumbnail(self, sha: str, image: Image.Image) -> None:
        atomic_write(self.thumb_file(sha), make_thumbnail(image))

    def remove(self, sha: str, ext: str) -> None:
        for f in (self.image_file(sha, ext), self.thumb_file(sha)):
            f.unlink(missing_ok=True)

    def open(self, path: Path, what: str) -> Image.Image:
        """Decode a stored original the way it was decoded at ingest."""
        try:
            return decode_image(path.read_bytes(), path.name)
        except (OSError, BadImage) as exc:
            raise StoreError(f"{what} cannot be read from {path} ({exc}); run `rdm check --repair`") from exc

    def files(self) -> Iterator[Path]:
        """Every file under images/ and thumbs/ (temporary ones included)."""
        for folder in FOLDERS:
            if (self.root / folder).exists():
                yield from (f for f in sorted((self.root / folder).rglob("*")) if f.is_file())
