"""A DB of any size, built quickly: synthetic small photos (distinct noise patterns, four categories, a few
tags) through the store's own ingest with the tiny encoder, file fsyncs off in this process only (durability
is not what these DBs are for). The benchmarks and the 20,000-image browser test build theirs here."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

import rdm.common.files
from rdm.db import ImageStore
from rdm.encoders import load_encoder

CATEGORIES = ("animals", "backgrounds", "objects", "people")
TAGS = ("outdoor", "studio", "product", "pet", "sofa", "night")


def synthetic(n: int, seed: int = 0):
    """(name, PNG bytes) of ``n`` distinct small pictures."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((96, 72), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        yield f"img-{i:06d}.png", buffer.getvalue()


def build_synthetic_db(folder: Path, n: int) -> Path:
    """A DB of ``n`` synthetic images with categories, two tags and a caption each (fsync off meanwhile)."""
    real_fsync, real_dir = os.fsync, rdm.common.files.fsync_dir
    os.fsync, rdm.common.files.fsync_dir = (lambda fd: None), (lambda path: None)
    try:
        store = ImageStore.create(folder, load_encoder("tiny"), encoder_reason="synthetic test DB")
        meta = {f"img-{i:06d}.png": {"category": CATEGORIES[i % 4], "tags": [TAGS[i % 6], TAGS[(i // 6) % 6]],
                                     "caption": f"synthetic picture {i}"} for i in range(n)}
        store.ingest_bytes(synthetic(n), metadata=meta, batch_size=64)
    finally:
        os.fsync, rdm.common.files.fsync_dir = real_fsync, real_dir
    return folder
