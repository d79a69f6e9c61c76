"""Where images come from: files, folders, zip archives and uploads, and decoding them with a reason
for every file that cannot become an image.

Untrusted files are handled with three rules:
- only an allow-list of raster formats is ever decoded (Pillow would otherwise open EPS or PDF by
  their content and run Ghostscript on them, whatever the file is called);
- sizes are checked before anything is read (the declared size of a zip member, the size of a
  file on disk) and again while reading (a header may lie), so no read is unbounded;
- the image header (width, height, mode) is checked before any pixel is decoded.
One bad candidate never stops the others: every failure becomes that candidate's reason.
"""

from __future__ import annotations

import io
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rdm.errors import BadImage

MAX_SIDE = 16_384  # larger images are almost always scans or mistakes, and cost GBs to decode
MAX_PIXELS = 50_000_000
MIN_SIDE = 16  # icons and tracking pixels make useless references
MAX_FILE_BYTES = 100 * 1024 * 1024
# The Pillow plugins allowed to open a file (the JPEG one also opens phones' multi-picture JPEGs, "MPO").
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
ALLOWED_NAMES = "JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}
SUPPORTED_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"}
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}  # 16-bit greyscale: scaled to 8 bits
# What reading one zip member or file can raise: bad CRC, encrypted member (RuntimeError), an
# unsupported compression such as deflate64 (NotImplementedError), a truncated stream.
READ_ERRORS = (OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class IngestItem:
    name: str
    status: str  # added | duplicate | skipped
    reason: str = ""
    image_id: int | None = None


@dataclass(frozen=True)
class Candidate:
    name: str
    read: Callable[[], bytes]  # may raise BadImage or one of READ_ERRORS: the candidate's reason


# --- decoding ---


def open_image(data: bytes, name: str = "<bytes>", *, min_side: int = MIN_SIDE) -> Image.Image:
    """The image's header, lazily (no pixels decoded yet), checked: an allowed format, sane dimensions
    (``min_side``: DB references smaller than 16 px are useless; a product cut-out may be tiny)."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise BadImage(f"file is {len(data) / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the stricter checks below decide
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise BadImage(f"not an image in an accepted format: use {ALLOWED_NAMES} (EPS, PDF, SVG and "
                       "other formats are not read)") from None
    except Image.DecompressionBombError as exc:
        raise BadImage(f"decompression bomb refused: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken headers
        raise BadImage(f"unreadable image header: {exc}") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise BadImage(f"decompression bomb refused: {w}x{h} = {w * h / 1e6:.0f} MP, "
                       f"over the {MAX_PIXELS / 1e6:.0f} MP limit")
    if max(w, h) > MAX_SIDE:
        raise BadImage(f"image too large: {w}x{h}, the longest side may be {MAX_SIDE} px")
    if min(w, h) < min_side:
        raise BadImage(f"image too small: {w}x{h}, both sides must be at least {min_side} px")
    if im.mode not in SUPPORTED_MODES | SIXTEEN_BIT_MODES:
        raise BadImage(f"unsupported pixel mode {im.mode!r} (e.g. float or 32-bit); save it as 8-bit RGB first")
    return im


def displayed_size(header: Image.Image) -> tuple[int, int]:
    """Width and height as the image is shown: EXIF orientations 5-8 turn it by 90 degrees."""
    w, h = header.size
    try:
        turned = header.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001 - a broken EXIF block only loses the orientation
        turned = False
    return (h, w) if turned else (w, h)


def decode_image(data: bytes, name: str = "<bytes>", *, max_side: int | None = None) -> Image.Image:
    """Bytes -> RGB image with EXIF orientation applied, or BadImage with a per-file reason.

    ``max_side`` decodes a reduced image (JPEG's DCT scaling, else Pillow's ``reduce``) whose longer
    side is at least ``max_side``: enough for embedding and thumbnails, a fraction of the memory.
    """
    im = open_image(data, name)
    try:
        if max_side and im.format in ("JPEG", "MPO"):
            im.draft("RGB", (max_side, max_side))  # decodes at 1/2, 1/4 or 1/8 scale, never below max_side
        im.load()
        if max_side and max(im.size) >= 2 * max_side:
            im = im.reduce(max(im.size) // max_side)
        im = ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data surfaces as many types
        raise BadImage(f"truncated or corrupt image data: {exc}") from None
    if im.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(im).astype(np.int64)
        if pixels.min() < 0 or pixels.max() > 65535:
            raise BadImage(f"unsupported pixel mode {im.mode!r} with values outside 16 bits; save it as 8-bit first")
        return Image.fromarray((pixels >> 8).astype(np.uint8), mode="L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent areas become white, as an ad layout would show them, not black.
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im.convert("RGB")


# --- bounded reads ---


def read_bounded(stream: BinaryIO, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """At most ``limit`` bytes; more than that (whatever a header declared) is refused."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise BadImage(f"{what} is over the {limit // 2**20} MB limit")
    return data


def read_file(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise BadImage(f"file is {size / 2**20:.0f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    with path.open("rb") as fh:
        return read_bounded(fh, "file")


# --- sources ---


def iter_sources(sources: Iterable[str | Path]) -> Iterator[Candidate | IngestItem]:
    """Files, folders (recursive) and zip archives -> candidates; everything else -> skipped items."""
    for source in sources:
        path = Path(source)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in child.relative_to(path).parts):
                    continue  # hidden files and folders (.git, .DS_Store) are not the user's photos
                if child.suffix.lower() not in IMAGE_SUFFIXES | {".zip"}:
                    yield IngestItem(str(child.relative_to(path)), "skipped", _not_an_image_type(child.name))
                    continue
                yield from iter_sources([child])
        elif path.is_file() and path.suffix.lower() == ".zip":
            try:
                archive = zipfile.ZipFile(path)
            except READ_ERRORS as exc:
                yield IngestItem(path.name, "skipped", f"not a readable zip archive: {exc}")
                continue
            yield from zip_candidates(archive)
        elif path.is_file():
            yield Candidate(path.name, lambda p=path: read_file(p))
        else:
            yield IngestItem(str(path), "skipped", "no such file or folder")


def bytes_sources(items: Iterable[tuple[str, bytes]]) -> Iterator[Candidate | IngestItem]:
    """Uploaded (name, bytes) pairs; a zip among them is expanded like a zip on disk."""
    for name, data in items:
        if name.lower().endswith(".zip"):
            try:
                archive = zipfile.ZipFile(io.BytesIO(data))
            except READ_ERRORS as exc:
                yield IngestItem(name, "skipped", f"not a readable zip archive: {exc}")
                continue
            yield from zip_candidates(archive)
        else:
            yield Candidate(name, lambda d=data: d)


def zip_candidates(archive: zipfile.ZipFile) -> Iterator[Candidate | IngestItem]:
    """One candidate per photo in the archive; every other member is reported, none is read whole
    before its size is known to be within the limit."""
    for info in archive.infolist():
        if info.is_dir():
            continue
        # Names from other systems use backslashes; only the file name is kept, never a path.
        name = PurePosixPath(info.filename.replace("\\", "/")).name
        if info.filename.startswith("__MACOSX/") or not name or name.startswith("."):
            continue  # macOS metadata and hidden files, as in a folder walk: not the user's photos
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            yield IngestItem(name, "skipped", _not_an_image_type(name))
        elif info.file_size > MAX_FILE_BYTES:
            yield IngestItem(name, "skipped", f"zip member is {info.file_size / 2**20:.0f} MB, over the "
                                              f"{MAX_FILE_BYTES // 2**20} MB limit")
        else:
            yield Candidate(name, lambda info=info: _read_member(archive, info))


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    with archive.open(info) as member:
        return read_bounded(member, "zip member")


def _not_an_image_type(name: str) -> str:
    suffix = Path(name).suffix.lower() or "(no extension)"
    return f"not an image file type ({suffix}): accepted are {ALLOWED_NAMES} files and .zip archives"
