"""Where DB images come from: files, folders, zip archives and uploads, decoded with a reason
for every file that cannot become a reference image."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError
from rdm.errors import BadImage

MAX_SIDE = 16_384  # larger images are almost always scans or mistakes, and cost GBs to decode
MAX_PIXELS = 50_000_000
MIN_SIDE = 16  # icons and tracking pixels make useless references
MAX_FILE_BYTES = 100 * 1024 * 1024
SUPPORTED_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class IngestItem:
    name: str
    status: str  # added | duplicate | skipped
    reason: str = ""
    image_id: int | None = None


def decode_image(data: bytes, name: str = "<bytes>") -> Image.Image:
    """Bytes -> RGB image with EXIF orientation applied, or BadImage with a per-file reason."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise BadImage(f"file is {len(data) / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage("not an image (format not recognised; use JPEG, PNG, WebP, GIF, BMP or TIFF)")
    except Image.DecompressionBombError as exc:
        raise BadImage(f"decompression bomb refused: {exc}")
    except Exception as exc:  # PIL raises many types for broken headers
        raise BadImage(f"unreadable image header: {exc}")
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise BadImage(f"decompression bomb refused: {w}x{h} = {w * h / 1e6:.0f} MP, "
                       f"over the {MAX_PIXELS / 1e6:.0f} MP limit")
    if max(w, h) > MAX_SIDE:
        raise BadImage(f"image too large: {w}x{h}, the longest side may be {MAX_SIDE} px")
    if min(w, h) < MIN_SIDE:
        raise BadImage(f"image too small: {w}x{h}, both sides must be at least {MIN_SIDE} px")
    if im.mode not in SUPPORTED_MODES:
        raise BadImage(f"unsupported pixel mode {im.mode!r} (e.g. 16-bit or float); "
                       "save it as 8-bit RGB first")
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
    except Exception as exc:
        raise BadImage(f"truncated or corrupt image data: {exc}")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent areas become white, as an ad layout would show them, not black.
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im.convert("RGB")


@dataclass(frozen=True)
class Candidate:
    name: str
    read: Callable[[], bytes]


def iter_sources(sources: Iterable[str | Path]) -> Iterator[Candidate | IngestItem]:
    """Files, folders (recursive) and zip archives -> candidates; missing paths -> skipped items."""
    for source in sources:
        path = Path(source)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if not any(part.startswith(".") for part in child.relative_to(path).parts):
                    yield from iter_sources([child])
        elif path.is_file() and path.suffix.lower() == ".zip":
            yield from _iter_zip(path)
        elif path.is_file():
            yield Candidate(path.name, path.read_bytes)
        else:
            yield IngestItem(str(path), "skipped", "no such file or folder")


def _iter_zip(path: Path) -> Iterator[Candidate | IngestItem]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        yield IngestItem(path.name, "skipped", f"not a readable zip archive: {exc}")
        return
    for info in archive.infolist():
        if info.is_dir() or info.filename.startswith("__MACOSX/") or Path(info.filename).name.startswith("."):
            continue
        name = Path(info.filename).name
        if info.file_size > MAX_FILE_BYTES:
            yield IngestItem(name, "skipped", f"zip member is {info.file_size / 2**20:.0f} MB, over the limit")
            continue
        yield Candidate(name, lambda info=info: archive.read(info))


def bytes_sources(items: Iterable[tuple[str, bytes]]) -> Iterator[Candidate | IngestItem]:
    """Uploaded (name, bytes) pairs; a zip among them is expanded like a zip on disk."""
    for name, data in items:
        if name.lower().endswith(".zip"):
            tmp = io.BytesIO(data)
            try:
                archive = zipfile.ZipFile(tmp)
            except zipfile.BadZipFile as exc:
                yield IngestItem(name, "skipped", f"not a readable zip archive: {exc}")
                continue
            for info in archive.infolist():
                if not info.is_dir() and not info.filename.startswith("__MACOSX/"):
                    yield Candidate(Path(info.filename).name, lambda a=archive, i=info: a.read(i))
        else:
            yield Candidate(name, lambda d=data: d)
