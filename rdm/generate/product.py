"""Keep the advertiser's product pixel-identical: place it on the canvas, inpaint around it, paste it back.

The product comes as an RGBA photo (alpha = the product) or as a photo plus a mask (white = the
product). It is cropped to its opaque pixels, scaled so that its longer side is ``scale`` times the
canvas's shorter side (no resampling when that is its own size) and centred at ``(x, y)``. The
inpainting decoder repaints everything outside the product; then the placed product is pasted back
through its alpha, so every opaque product pixel of the result is exactly the placed product's and
semi-transparent edge pixels are alpha-blended with what was generated around them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from rdm.common.files import atomic_write, content_addressed
from rdm.errors import BadImage, ProductError
from rdm.common.sources import open_image, read_file

# alpha at or above this is "product" for the decoder: KandinskyV22InpaintPipeline binarises at 0.5 too
KEEP_ALPHA = 128
MAX_COVERAGE = 0.9  # the product may cover at most this share of the canvas; the rest is generated
CANVAS_FILL = (127, 127, 127)  # behind the product on the decoder's input; masked out there anyway


@dataclass(frozen=True)
class ProductPlacement:
    """Where the product goes: its longer side is ``scale`` x the canvas's shorter side, its centre at
    (``x``, ``y``) as fractions of the canvas width and height."""

    scale: float = 0.5
    x: float = 0.5
    y: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 < self.scale <= 1.0:
            raise ProductError(f"product scale must be in (0, 1] (a share of the canvas's shorter side), "
                               f"got {self.scale}")
        for name, value in (("x", self.x), ("y", self.y)):
            if not 0.0 <= value <= 1.0:
                raise ProductError(f"product centre {name} must be in [0, 1] (a share of the canvas), got {value}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "ProductPlacement":
        try:
            return cls(**{k: float(v) for k, v in data.items()})
        except TypeError as exc:
            raise ProductError(f"bad product placement {dict(data)!r}: {exc}") from exc


@dataclass(frozen=True, eq=False)
class ProductLock:
    """The product to keep pixel-identical: RGBA pixels cropped to the product, and where they go."""

    image: Image.Image  # RGBA; alpha = the product
    placement: ProductPlacement = field(default_factory=ProductPlacement)
    source: str | None = None  # where the photo (and mask) came from, for the run record
    mask_source: str | None = None

    def sha256(self) -> str:
        """Fingerprint of the product's RGBA pixels: the record proves which product was locked."""
        return hashlib.sha256(self.image.tobytes()).hexdigest()


@dataclass(frozen=True, eq=False)
class PlacedProduct:
    """The product on a canvas of the output size."""

    layer: Image.Image  # RGBA, canvas-sized, transparent outside the product
    box: tuple[int, int, int, int]  # left, top, right, bottom

    @property
    def canvas(self) -> Image.Image:
        """The decoder's input picture: the product over a neutral fill."""
        base = Image.new("RGBA", self.layer.size, CANVAS_FILL + (255,))
        return Image.alpha_composite(base, self.layer).convert("RGB")

    @property
    def repaint_mask(self) -> Image.Image:
        """Diffusers' Kandinsky 2.2 inpaint convention (since 0.19): white = repaint, black = keep."""
        alpha = np.asarray(self.layer.getchannel("A"))
        return Image.fromarray(np.where(alpha >= KEEP_ALPHA, 0, 255).astype(np.uint8), mode="L")

    def paste_onto(self, generated: Image.Image) -> Image.Image:
        """``generated`` with the product's pixels back on top: exact where opaque, blended at edges."""
        if generated.size != self.layer.size:
            raise ProductError(f"generated image is {generated.size}, the product canvas {self.layer.size}")
        layer = np.asarray(self.layer, dtype=np.uint32)
        alpha = layer[..., 3:]
        base = np.asarray(generated.convert("RGB"), dtype=np.uint32)
        out = (layer[..., :3] * alpha + base * (255 - alpha) + 127) // 255  # integer: alpha 255 gives the product
        return Image.fromarray(out.astype(np.uint8), mode="RGB")


def product_lock(photo: Image.Image, mask: Image.Image | None = None,
                 placement: ProductPlacement | None = None, *, source: str | None = None,
                 mask_source: str | None = None) -> ProductLock:
    """Validate a product photo (RGBA, or any photo plus a mask where white = product) into a lock."""
    # 1. the alpha: the mask wins over the photo's own transparency
    if mask is not None:
        if mask.size != photo.size:
            raise ProductError(f"the product mask is {mask.size[0]}x{mask.size[1]} but the photo is "
                               f"{photo.size[0]}x{photo.size[1]}: use a mask of the photo's exact size")
        rgba = photo.convert("RGB").convert("RGBA")
        rgba.putalpha(mask.convert("L"))
    else:
        has_alpha = "A" in photo.getbands() or "transparency" in photo.info
        rgba = photo.convert("RGBA")
        if not has_alpha or rgba.getchannel("A").getextrema()[0] == 255:
            raise ProductError("the product photo has no transparent background: upload a PNG with transparency "
                               "or a mask (white = product)")
    # 2. crop to the product, so the placement's scale measures the product and not its padding
    alpha = rgba.getchannel("A")
    if alpha.getextrema()[1] < KEEP_ALPHA:
        what = "mask" if mask is not None else "photo's alpha channel"
        raise ProductError(f"the product {what} is empty (no opaque pixel): the product must be white in the "
                           "mask / opaque in the PNG")
    return ProductLock(image=rgba.crop(alpha.getbbox()), placement=placement or ProductPlacement(),
                       source=source, mask_source=mask_source)


def load_product(path: str | Path, mask_path: str | Path | None = None,
                 placement: ProductPlacement | None = None) -> ProductLock:
    """``product_lock`` from files; errors name the file that is missing or unreadable."""
    photo = _open(path, "product photo")
    mask = _open(mask_path, "product mask") if mask_path is not None else None
    return product_lock(photo, mask, placement, source=str(path), mask_source=str(mask_path) if mask_path else None)


def save_product_upload(folder: str | Path, name: str, data: bytes, what: str = "product photo") -> Path:
    """Store an uploaded product photo or mask byte for byte (re-encoding could drop the alpha),
    content-addressed under its role, after checking that it decodes as an allowed raster image."""
    suffix = re.sub(r"[^a-z0-9.]", "", Path(name).suffix.lower()) or ".png"
    path = content_addressed(folder, name, data, suffix, role=what)
    if path.exists():
        return path
    _decode(data, what, name)
    atomic_write(path, data)
    return path


def _open(path: str | Path, what: str) -> Image.Image:
    try:
        data = read_file(Path(path))
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ProductError(f"{what} {path} not found: check the path") from exc
    except (OSError, BadImage) as exc:
        raise ProductError(f"{what} {path} cannot be read: {exc}") from exc
    return _decode(data, what, str(path))


def _decode(data: bytes, what: str, name: str) -> Image.Image:
    """The product's pixels with their alpha, from an allowed raster format only."""
    try:
        image = open_image(data, name, min_side=1)
        image.load()
        return image
    except BadImage as exc:
        raise ProductError(f"{what} {name} cannot be used: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - truncated data surfaces as many types
        raise ProductError(f"{what} {name} cannot be read as an image: {exc}") from exc


def place_product(lock: ProductLock, size: tuple[int, int]) -> PlacedProduct:
    """Scale and position the product on a ``size`` (width, height) canvas; it must fit whole, and
    leave something around it to generate."""
    width, height = size
    p = lock.placement
    # 1. size: the longer side becomes scale x the canvas's shorter side; resample only if it changes
    pw, ph = lock.image.size
    ratio = p.scale * min(width, height) / max(pw, ph)
    new = (max(1, round(pw * ratio)), max(1, round(ph * ratio)))
    product = lock.image if new == (pw, ph) else lock.image.resize(new, Image.Resampling.LANCZOS)
    # 2. position: the whole product must stay on the canvas, or part of it would be cut off
    left, top = round(p.x * width - new[0] / 2), round(p.y * height - new[1] / 2)
    box = (left, top, left + new[0], top + new[1])
    overhang = {"left": -left, "top": -top, "right": box[2] - width, "bottom": box[3] - height}
    out = {side: px for side, px in overhang.items() if px > 0}
    if out:
        sides = ", ".join(f"{px}px on the {side}" for side, px in out.items())
        raise ProductError(f"the product at scale {p.scale:g}, centre ({p.x:g}, {p.y:g}) sticks out of the "
                           f"{width}x{height} canvas by {sides}: lower the scale or move it toward the centre")
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    layer.paste(product, box[:2])
    # 3. something must be left to generate around it
    coverage = float((np.asarray(layer.getchannel("A")) >= KEEP_ALPHA).mean())
    if coverage > MAX_COVERAGE:
        raise ProductError(f"the product covers {coverage:.0%} of the {width}x{height} canvas, leaving almost "
                           f"nothing to generate around it (at most {MAX_COVERAGE:.0%}): lower the scale")
    return PlacedProduct(layer=layer, box=box)
