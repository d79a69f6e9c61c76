"""open_clip encoders: any open_clip model by name (real weights from the usual caches) and the tiny one for tests."""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from rdm.encoders.base import l2_normalise, pick_device
from rdm.errors import WeightsMissing


class OpenClipEncoder:
    """Any open_clip model; fp16 on CUDA halves memory and the embeddings barely move."""

    def __init__(self, model: torch.nn.Module, preprocess, tokenizer, name: str, device: str):
        self.model, self.preprocess, self.tokenizer = model.eval(), preprocess, tokenizer
        self.name, self.device = name, device
        self.dim = int(model.text_projection.shape[1] if hasattr(model, "text_projection")
                       and model.text_projection is not None else model.visual.output_dim)
        self._lock = threading.Lock()  # Streamlit reruns share one cached encoder across threads

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)
        with self._lock:
            feats = self.model.encode_image(batch.to(next(self.model.parameters()).dtype))
        return l2_normalise(feats.float().cpu().numpy())

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._lock:
            feats = self.model.encode_text(tokens)
        return l2_normalise(feats.float().cpu().numpy())


def open_clip_weights_present(spec: str) -> bool | None:
    """Whether the weights are on disk already, without touching the network (None: can't tell).

    Offline, open_clip's hub download retries for most of a minute before failing; `auto`
    must decide instantly.
    """
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import get_pretrained_cfg

    model_name, _, pretrained = spec.partition("/")
    if model_name.startswith("local-dir:"):
        return Path(model_name.split(":", 1)[1]).is_dir()
    if pretrained and Path(pretrained).is_file():
        return True
    hub = (get_pretrained_cfg(model_name, pretrained) or {}).get("hf_hub", "").strip("/")
    if not hub:
        return None
    names = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    return any(isinstance(try_to_load_from_cache(hub, n), str) for n in names)


def open_clip_encoder(spec: str, device: str) -> OpenClipEncoder:
    import open_clip

    model_name, _, pretrained = spec.partition("/")
    if model_name.startswith("local-dir:"):
        model_name, pretrained = spec, None
    device = pick_device(device)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained or None, device=device,
            precision="fp16" if device.startswith("cuda") else "fp32")
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as exc:  # hub/network/file errors all mean the same thing to the user
        raise WeightsMissing(
            f"weights for open_clip {spec} not found ({type(exc).__name__}: {exc}): run with "
            "internet once, or set HF_HOME / point to a local checkpoint "
            "(open_clip:MODEL//path/to/open_clip_model.safetensors), or use --encoder conse") from exc
    return OpenClipEncoder(model, preprocess, tokenizer, name=f"open_clip:{spec}", device=device)


TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def tiny_encoder(seed: int = 0) -> OpenClipEncoder:
    """A real open_clip model class at toy size; seeded so every process gets the same weights
    (seed 0 is the ``tiny`` encoder; another seed gives a model apart, e.g. a tiny judge)."""
    import open_clip

    cfg_dir = Path(tempfile.mkdtemp(prefix="rdm-tiny-clip-"))
    (cfg_dir / "rdm-tiny-clip.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(cfg_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms("rdm-tiny-clip", pretrained=None)
    return OpenClipEncoder(model, preprocess, open_clip.get_tokenizer("rdm-tiny-clip"),
                           name="tiny" if seed == 0 else f"tiny-{seed}", device="cpu")
