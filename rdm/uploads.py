"""The advertiser's product photos, uploaded in the dashboard and kept for plans and runs.

A plan refers to an input photo by path, and a run must still find it later, so uploads are
decoded (EXIF orientation applied, transparency on white, as the DB does), stored as PNG under a
content-addressed name, and never overwritten.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

from rdm.files import atomic_write
from rdm.sources import decode_image


def save_input_photo(folder: str | Path, name: str, data: bytes) -> Path:
    """Validate ``data`` and store it in ``folder``; raises ``rdm.sources.BadImage`` with the reason."""
    # 1. the same checks as a DB upload: a product photo that cannot be decoded is refused
    image = decode_image(data, name)
    # 2. content-addressed: the same photo uploaded twice is one file, and a path never changes meaning
    stem = re.sub(r"[^a-z0-9]+", "-", Path(name).stem.lower()).strip("-")[:40] or "photo"
    path = Path(folder) / f"{hashlib.sha256(data).hexdigest()[:16]}-{stem}.png"
    if not path.exists():
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        atomic_write(path, buffer.getvalue())
    return path
