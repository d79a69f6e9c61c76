"""Durable file writes and thumbnails, shared by the DB and the run folders."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import threading
from pathlib import Path

from PIL import Image

from rdm.errors import DiskFull

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a full disk, or the user's quota


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: readers see the old or the new file, whole. A failed write
    leaves no temp file behind; a full disk is ``DiskFull``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise DiskFull(f"no space left to write {path} ({len(data):,} bytes; {exc.strerror}): it was not "
                           "written. Free some disk space and try again") from exc
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def slug(text: str, limit: int = 60, default: str = "item") -> str:
    """A lowercase ASCII file-name part: runs of other characters become one dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or default


def content_addressed(folder: str | Path, name: str, data: bytes, suffix: str, role: str) -> Path:
    """``<sha256 prefix>-<role>-<slug of name><suffix>`` in ``folder``: the same bytes uploaded twice
    for one role are one file, and a path stored in a plan or run never changes meaning. The role is
    part of the name because one upload is stored differently per role (an input photo flattened to
    RGB, a product byte for byte with its transparency)."""
    stem = slug(Path(name).stem, 40, "upload")
    return Path(folder) / f"{hashlib.sha256(data).hexdigest()[:16]}-{slug(role)}-{stem}{suffix}"


def jpeg_thumbnail(image: Image.Image, side: int, quality: int = 85) -> bytes:
    thumb = image.convert("RGB")
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def inside(folder: Path, relative: str) -> Path | None:
    """``folder / relative`` if that stays inside ``folder`` (no ``..``, no absolute path, no link out)."""
    if not isinstance(relative, str) or not relative:
        return None
    root = folder.resolve()
    path = (folder / relative).resolve()
    return path if path.is_relative_to(root) and path != root else None
