"""The advertiser's product photos, uploaded in the dashboard and kept for plans and runs.

A plan refers to an input photo by path, and a run must still find it later, so uploads are
decoded (EXIF orientation applied, transparency on white, as the DB does), stored as PNG under a
content-addressed name, and never overwritten.
"""

from __future__ import annotations

import io
from pathlib import Path

from rdm.common.files import atomic_write, content_addressed
from rdm.common.sources import decode_image


def save_input_photo(folder: str | Path, name: str, data: bytes) -> Path:
    """Validate ``data`` and store it in ``folder``; raises ``rdm.common.sources.BadImage`` with the reason."""
    # 1. content-addressed: a photo stored before passed the checks already (pages rerun often)
    path = content_addressed(folder, name, data, ".png", role="input")
    if path.exists():
        return path
    # 2. the same checks as a DB upload: a product photo that cannot be decoded is refused
    image = decode_image(data, name)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
    return path
