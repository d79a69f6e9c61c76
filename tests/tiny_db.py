"""A small DB (tiny encoder, a few demo photos per category) and the environment the dashboard runs in."""

from __future__ import annotations

import json
from pathlib import Path

from rdm.db import ImageStore
from rdm.ingest.demo import manifest_metadata
from rdm.encoders import load_encoder
from rdm.settings import DEMO_PHOTOS

PER_CATEGORY = 3
ENV_CLEARED = ("RDM_LLM_BASE_URL", "OPENAI_BASE_URL", "RDM_LLM_API_KEY", "OPENAI_API_KEY", "RDM_WORKER_URL",
               "RDM_WORKER_TOKEN")


def demo_files(per_category: int = PER_CATEGORY) -> list[Path]:
    """The first few demo photos of each category, so every category shows up."""
    picked: dict[str, list[Path]] = {}
    for line in (DEMO_PHOTOS / "manifest.jsonl").read_text().splitlines():
        rec = json.loads(line)
        group = picked.setdefault(rec["category"], [])
        if len(group) < per_category:
            group.append(DEMO_PHOTOS / rec["file"])
    return [p for files in picked.values() for p in files]


def build_tiny_db(path: Path) -> ImageStore:
    store = ImageStore.create(path, load_encoder("tiny"), encoder_reason="tiny encoder for tests")
    store.ingest(demo_files(), metadata=manifest_metadata(DEMO_PHOTOS))
    return store
