"""Placing, masking and pasting back the product (pure image functions, no model)."""

import numpy as np
import pytest
from PIL import Image

from rdm.generate.product import ProductError, ProductPlacement, load_product, place_product, product_lock


def test_edge_pixels_are_alpha_blended_and_opaque_ones_copied():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (200, 100, 0)
    rgba[..., 3] = 255
    rgba[:, 0, 3] = 128  # soft left edge
    rgba[:, -1, 3] = 0  # transparent right column (cropped away)
    lock = product_lock(Image.fromarray(rgba, "RGBA"), placement=ProductPlacement(scale=0.5, x=0.5, y=0.5))
    assert lock.image.size == (7, 8)
    placed = place_product(lock, (16, 16))
    out = np.asarray(placed.paste_onto(Image.new("RGB", (16, 16), (0, 0, 255))), np.int16)
    left, top = placed.box[:2]
    assert tuple(out[top, left + 3]) == (200, 100, 0)
    assert tuple(out[top, left]) == (100, 50, 127)  # half product, half generated
    assert tuple(out[0, 0]) == (0, 0, 255)


def test_placement_values_outside_the_canvas_are_refused():
    with pytest.raises(ProductError, match=r"scale must be in \(0, 1\]"):
        ProductPlacement(scale=1.5)
    with pytest.raises(ProductError, match="centre x must be in"):
        ProductPlacement(x=-0.1)
    assert ProductPlacement.from_dict({"scale": "0.4", "x": 0.2, "y": 0.8}) == ProductPlacement(0.4, 0.2, 0.8)


def test_missing_product_files_are_named(tmp_path):
    with pytest.raises(ProductError, match="product photo .*nope.png not found"):
        load_product(tmp_path / "nope.png")
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (10, 10), "red").save(photo)
    with pytest.raises(ProductError, match="product mask .*m.png not found"):
        load_product(photo, tmp_path / "m.png")
