"""Encoders: one interface, normalised outputs, offline ConSE that knows what a dog is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rdm.encoders.effnet_lite import load_pretrained, weights_path
from rdm.encoders import load_encoder, resolve_encoder
from rdm.errors import EncoderError, WeightsMissing
from rdm.settings import DEMO_PHOTOS

IMAGES = DEMO_PHOTOS / "images"


def test_our_efficientnet_lite0_matches_timms_reference_implementation():
    timm = pytest.importorskip("timm")
    ours = load_pretrained()
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    ref.load_state_dict(dict(zip(ref.state_dict(), state.values())))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-4)


@pytest.mark.parametrize("name", ["tiny", "conse"])
def test_encoders_return_unit_float32_rows(name):
    enc = load_encoder(name)
    imgs = enc.encode_images([Image.open(IMAGES / "gcompris-farm-dog.jpg"), Image.new("L", (50, 70))])
    txts = enc.encode_texts(["a dog", "a red sofa", "a dog"])
    for arr, n in ((imgs, 2), (txts, 3)):
        assert arr.dtype == np.float32 and arr.shape == (n, enc.dim)
        assert np.allclose(np.linalg.norm(arr, axis=1), 1, atol=1e-5)
    assert np.allclose(txts[0], txts[2])
    assert enc.encode_texts([]).shape == (0, enc.dim)


def test_conse_ranks_the_matching_caption_first():
    enc = load_encoder("conse")
    names = ["gcompris-farm-dog.jpg", "gcompris-farm-cat.jpg", "gcompris-categories-tools-hammer-1.jpg"]
    imgs = enc.encode_images([Image.open(IMAGES / n) for n in names])
    sims = enc.encode_texts(["a dog", "a cat", "a hammer"]) @ imgs.T
    assert list(sims.argmax(axis=1)) == [0, 1, 2]


def test_unknown_encoder_and_missing_weights_say_what_to_do():
    with pytest.raises(EncoderError, match="unknown encoder 'clipx'"):
        load_encoder("clipx")
    with pytest.raises(WeightsMissing, match="run with internet once, or set HF_HOME"):
        load_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k")


def test_auto_falls_back_to_the_offline_encoder_and_explains_why():
    choice = resolve_encoder("auto")
    # No CLIP weights can be cached on this machine (no hub access), so auto picks ConSE.
    assert choice.encoder.name == "conse"
    assert "not on this machine" in choice.reason and "rdm reindex --encoder open_clip" in choice.reason
