"""A small demo-photo DB with the offline ConSE encoder, built once per test session and shared
by the retrieval and evaluation tests (semantics matter there, so `tiny` will not do)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from rdm.ingest.demo import manifest_metadata
from rdm.encoders import load_encoder
from rdm.settings import DEMO_PHOTOS
from rdm.db import ImageStore

PHOTOS = (
    "gcompris-farm-dog.jpg", "lomiri-friends.jpg", "gcompris-farm-cat.jpg", "skimage-chelsea.jpg",
    "gcompris-erase-kitten.jpg", "gcompris-categories-others-pillow.jpg", "gcompris-categories-others-chair.jpg",
    "gcompris-categories-others-cup.jpg", "skimage-coffee.jpg", "palapeli-citrus-fruits.jpg",
    "gcompris-categories-renewable-solar-1.jpg", "gcompris-categories-renewable-solar-5.jpg",
    "gcompris-categories-renewable-solar-6.jpg", "gcompris-categories-renewable-solar-8.jpg",
    "gcompris-categories-renewable-windmill-9.jpg", "gcompris-categories-renewable-windmill-13.jpg",
    "gcompris-categories-tools-hammer-1.jpg", "gcompris-categories-tools-hammer-3.jpg",
    "gcompris-categories-tools-hammer-8.jpg", "gcompris-monuments-france-cite-de-carcassonne.jpg",
    "gcompris-monuments-germany-neuschwanstein-castle.jpg", "gcompris-categories-fishes-fish-5.jpg",
    "gcompris-categories-fishes-fish-14.jpg", "gcompris-erase-crab.jpg",
)
MIRRORED_DOG = "mirrored-farm-dog.jpg"  # an edited copy of the dog photo: a near-duplicate


def build_or_open(folder: Path) -> ImageStore:
    """The subset DB in ``folder`` (built on first use; later calls just open it)."""
    encoder = load_encoder("conse")
    if (folder / "meta.sqlite").exists():
        return ImageStore.open(folder, encoder)
    src = folder.with_name(folder.name + "-photos")
    src.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        (src / name).write_bytes((DEMO_PHOTOS / "images" / name).read_bytes())
    with Image.open(DEMO_PHOTOS / "images" / "gcompris-farm-dog.jpg") as dog:
        ImageOps.mirror(dog.convert("RGB")).save(src / MIRRORED_DOG, quality=90)
    store = ImageStore.create(folder, encoder)
    meta = manifest_metadata(DEMO_PHOTOS)
    meta[MIRRORED_DOG] = {**meta["gcompris-farm-dog.jpg"], "caption": "Dog (mirrored)"}
    report = store.ingest([src], metadata=meta)
    assert len(report.added) == len(PHOTOS) + 1, report.summary()
    return store


def ids_by_name(store: ImageStore) -> dict[str, int]:
    return {r.filename: r.id for r in store.records()}
