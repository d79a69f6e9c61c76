"""The DB's files: content-addressed originals (the bytes as uploaded) and 256-px JPEG thumbnails.

``images/ab/<sha256>.<ext>`` and ``thumbs/ab/<sha256>.jpg``: the same bytes are one file, and a
file name never changes meaning. Files are written durably (temp + fsync + rename).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterator

from PIL import Image

from rdm.errors import BadImage, StoreError
from rdm.common.files import atomic_write, jpeg_thumbnail
from rdm.common.sources import ALLOWED_FORMATS, decode_image

THUMB_SIZE = 256
FOLDERS = ("images", "thumbs")
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "AVIF": "avif",  # MPO: phones' multi-picture JPEGs
              "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


KNOWN_EXTS = frozenset(EXTENSIONS.values()) | {"img"}
SHA256 = re.compile(r"[0-9a-f]{64}")


def _checked(root: Path, sha: str) -> str:
    """A row's sha256, which names its files: anything else could name a file outside the DB folder."""
    if not isinstance(sha, str) or not SHA256.fullmatch(sha):
        raise StoreError(_tampered(root, f"sha256 {sha!r}"))
    return sha


def _tampered(root: Path, what: str) -> str:
    return (f"an image row of the DB at {root} has {what}, which names no file of the DB (the DB was damaged or "
            "tampered with): run `rdm check --repair`, which removes such rows")


def make_thumbnail(image: Image.Image) -> bytes:
    return jpeg_thumbnail(image, THUMB_SIZE)


def ext_for(data: bytes) -> str:
    """The file extension of the format the bytes are in."""
    return EXTENSIONS.get(Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS).format or "", "img")


class Blobs:
    def __init__(self, root: Path):
        self.root = Path(root)

    def image_file(self, sha: str, ext: str) -> Path:
        if ext not in KNOWN_EXTS:
            raise StoreError(_tampered(self.root, f"extension {ext!r}"))
        return self.root / "images" / _checked(self.root, sha)[:2] / f"{sha}.{ext}"

    def thumb_file(self, sha: str) -> Path:
        return self.root / "thumbs" / _checked(self.root, sha)[:2] / f"{sha}.jpg"

    def write(self, sha: str, data: bytes, thumbnail: bytes) -> str:
        """Store the original and its thumbnail (JPEG bytes); returns the original's extension."""
        ext = ext_for(data)
        atomic_write(self.image_file(sha, ext), data)
        atomic_write(self.thumb_file(sha), thumbnail)
        return ext

    def write_thumbnail(self, sha: str, image: Image.Image) -> None:
        atomic_write(self.thumb_file(sha), make_thumbnail(image))

    def files_of(self, sha: str, ext: str) -> tuple[Path, Path]:
        """An image's original and thumbnail."""
        return self.image_file(sha, ext), self.thumb_file(sha)

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
