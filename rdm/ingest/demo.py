"""The default demo DB: the public-domain / CC photos shipped in data/demo-photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rdm.encoders import resolve_encoder
from rdm.settings import DEMO_DB, DEMO_PHOTOS
from rdm.db import ImageStore, IngestReport, ProgressFn


def manifest_metadata(photos: Path) -> dict[str, dict]:
    """File name -> caption (the photo's title), category, tags, licence, author, source."""
    meta = {}
    for line in (photos / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            meta[Path(rec["file"]).name] = {
                "caption": rec.get("title", ""), "category": rec.get("category", ""),
                "tags": rec.get("tags", []), "licence": rec.get("licence", ""),
                "author": rec.get("author", ""), "source": rec.get("source_url", "")}
    return meta


def build_demo_db(db: Path = DEMO_DB, photos: Path = DEMO_PHOTOS, encoder: str = "auto",
                  progress: ProgressFn | None = None) -> tuple[ImageStore, IngestReport]:
    """Build into a side folder and rename: an interrupted build never looks like a finished DB."""
    db = Path(db)
    building = db.with_name(f".{db.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    choice = resolve_encoder(encoder)
    store = ImageStore.create(building, choice.encoder, encoder_reason=choice.reason)
    report = store.ingest([photos / "images"], metadata=manifest_metadata(photos), progress=progress)
    building.rename(db)
    return ImageStore.open(db, choice.encoder), report
