"""Pick an encoder by name: ``load_encoder(name)`` builds any of them once per process, and
``resolve_encoder("auto")`` takes open_clip where its weights are on disk, else ConSE, saying why."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rdm.encoders.base import Encoder
from rdm.encoders.conse import ConseEncoder
from rdm.encoders.openclip import open_clip_weights_present, open_clip_encoder, tiny_encoder
from rdm.errors import EncoderError, WeightsMissing

DEFAULT_OPEN_CLIP = "open_clip:ViT-B-32/laion2b_s34b_b79k"

_CACHE: dict[tuple[str, str], Encoder] = {}
_CACHE_LOCK = threading.Lock()


def load_encoder(name: str, device: str = "auto") -> Encoder:
    """Build (once per process) the encoder called ``name``; see the module docstring."""
    key = (name, device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if name == "tiny":
                _CACHE[key] = tiny_encoder()
            elif name == "conse":
                _CACHE[key] = ConseEncoder(device)
            elif name == "open_clip":
                _CACHE[key] = open_clip_encoder(DEFAULT_OPEN_CLIP.split(":", 1)[1], device)
            elif name.startswith("open_clip:"):
                _CACHE[key] = open_clip_encoder(name.split(":", 1)[1], device)
            else:
                raise EncoderError(f"unknown encoder {name!r}: use open_clip[:MODEL/PRETRAINED], "
                                   "conse (offline) or tiny (tests)")
        return _CACHE[key]


def encoder_dim(name: str) -> int:
    """The width of the embeddings encoder ``name`` makes; open_clip's model config says it without any weights."""
    if name == "open_clip" or name.startswith("open_clip:"):
        import open_clip

        model = (DEFAULT_OPEN_CLIP if name == "open_clip" else name).split(":", 1)[1].split("/", 1)[0]
        config = open_clip.get_model_config(model)
        if config is not None:
            return int(config["embed_dim"])
    return load_encoder(name).dim  # tiny and ConSE load offline; another open_clip model needs its weights


@dataclass(frozen=True)
class EncoderChoice:
    encoder: Encoder
    reason: str  # plain words for the dashboard and CLI


def resolve_encoder(name: str = "auto", device: str = "auto") -> EncoderChoice:
    """``auto``: open_clip if its weights load, else the offline ConSE encoder, saying why."""
    if name != "auto":
        return EncoderChoice(load_encoder(name, device), f"{name} was asked for explicitly")
    if open_clip_weights_present(DEFAULT_OPEN_CLIP.split(":", 1)[1]) is not False:
        try:
            enc = load_encoder(DEFAULT_OPEN_CLIP, device)
            return EncoderChoice(enc, f"open_clip weights for {DEFAULT_OPEN_CLIP} were found, so "
                                      "the DB uses real CLIP embeddings")
        except WeightsMissing:
            pass
    return EncoderChoice(load_encoder("conse", device),
                         f"open_clip weights for {DEFAULT_OPEN_CLIP} are not on this machine "
                         "(no internet to fetch them), so the DB uses the offline ConSE encoder: "
                         "ImageNet classes (EfficientNet-Lite0) mapped into MiniLM sentence space. "
                         "It knows animals and objects well, landmarks and scenes less; "
                         "captions and tags carry what it misses. Run `rdm reindex --encoder "
                         "open_clip` once CLIP weights are available.")
