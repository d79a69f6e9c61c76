"""Copies of one demo photo as a curator meets them (smaller, recompressed, brightened), for the copy tests
of the DB and of the Review page."""

from __future__ import annotations

import io

from PIL import Image, ImageEnhance

from rdm.settings import DEMO_PHOTOS

IMAGES = DEMO_PHOTOS / "images"
DOG = IMAGES / "gcompris-farm-dog.jpg"


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def copies_of(path):
    with Image.open(path) as im:
        im = im.convert("RGB")
        smaller = im.resize((im.width // 2, im.height // 2))
        return [("dog-small.jpg", jpeg(smaller)), ("dog-recompressed.jpg", jpeg(im, quality=55)),
                ("dog-brighter.png", _png(ImageEnhance.Brightness(im).enhance(1.1)))]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
